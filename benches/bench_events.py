"""The event store: durable PutEvents calls, alone and from 8 threads, tailing and CSV export.

Group ``put_events 8 threads``: 8 client threads each make ``RANKCORE_BENCH_EVENT_CALLS`` calls
(default 25) of 10 events, with group commit beside the baseline of one commit per call
(``max_batch=1``) in the same run. Group ``put_events 1 thread``: one call of 10 events, so one
synced commit. ``tail`` reads 1,000 records; ``export`` writes the Interactions CSV of
``RANKCORE_BENCH_EVENT_ROWS`` events (default 10,000). Every store syncs each commit
(``synchronous=FULL``), so the figures depend on the disk under the temporary directory.
``benches/events_throughput.py`` gives the sustained events/s figure.
Run: ``pytest benches/bench_events.py --benchmark-json=events.json``.
"""
import io
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from rankcore.personalize.event_store import EventStore

CALLS = int(os.environ.get("RANKCORE_BENCH_EVENT_CALLS", "25"))
ROWS = int(os.environ.get("RANKCORE_BENCH_EVENT_ROWS", "10000"))
THREADS = 8


def _batch(prefix):
    return [{"eventType": "click", "itemId": f"item-{j}", "sentAt": 1_700_000_000 + j,
             "eventId": f"{prefix}-{j}"} for j in range(10)]


@pytest.mark.parametrize("mode", ["group-commit", "commit-per-call"])
def test_put_events_8_threads(benchmark, tmp_path, mode):
    benchmark.group = f"put_events {THREADS} threads x {CALLS} calls x 10 events"
    kwargs = {"max_batch": 1, "commit_interval": 0} if mode == "commit-per-call" else {}
    with EventStore(tmp_path / "events.db", **kwargs) as store, ThreadPoolExecutor(THREADS) as pool:
        def client(t):
            for c in range(CALLS):
                store.put_events("track", f"user-{t}", f"sess-{t}", _batch(f"{t}-{c}"))

        def round_():
            list(pool.map(client, range(THREADS)))

        benchmark.pedantic(round_, rounds=3, iterations=1)
        assert store.counts()["events"] >= THREADS * CALLS * 10


def test_put_events_1_thread(benchmark, tmp_path):
    benchmark.group = "put_events 1 thread"
    with EventStore(tmp_path / "events.db") as store:
        benchmark(store.put_events, "track", "user", "sess", _batch("e"))
        assert store.counts()["events"] >= 10


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.db"
    with EventStore(path, max_batch=1024) as store, ThreadPoolExecutor(THREADS) as pool:
        def client(t):
            for c in range(t, ROWS // 10, THREADS):
                store.put_events("track", f"user-{c % 500}", f"sess-{c}", _batch(str(c)))

        list(pool.map(client, range(THREADS)))
    with EventStore(path) as store:
        yield store


def test_tail_1000(benchmark, filled):
    benchmark.group = "tail"
    records = benchmark(filled.tail, 0, 1000)
    assert len(records) == min(1000, filled.last_sequence())


def test_export_csv(benchmark, filled):
    benchmark.group = "export"
    n = benchmark(lambda: filled.export_interactions_csv(io.StringIO()))
    assert n == filled.counts()["events"]
