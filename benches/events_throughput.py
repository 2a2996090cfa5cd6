"""Sustained PutEvents throughput of the event store: events/s with 8 client threads.

Each client thread calls ``EventStore.put_events`` with 10 events per call, back to back, for
``--seconds``; every call returns only once its events are committed and synced. Three stores run
one after the other in the same process, on the same disk:

  commit-per-call   ``max_batch=1``: one transaction and one WAL sync per call (the baseline)
  group             ``commit_interval=0``: calls queued during a commit share the next one
  group+2ms         ``commit_interval=0.002`` (the default): the writer waits 2 ms for more calls

Printed per store: events/s, calls/s and the call latency p50/p99 (ms). The target for the
server is at least 2,000 events/s. Run: ``python benches/events_throughput.py [--seconds 3]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

from rankcore.personalize.event_store import EventStore

MODES = {
    "commit-per-call": {"max_batch": 1, "commit_interval": 0.0},
    "group": {"commit_interval": 0.0},
    "group+2ms": {"commit_interval": 0.002},
}


def run(mode: str, directory: str, threads: int, per_call: int, seconds: float) -> dict:
    path = os.path.join(directory, f"{mode}.db")
    latencies: list = [[] for _ in range(threads)]
    stop = threading.Event()
    with EventStore(path, **MODES[mode]) as store:
        def client(t):
            n = 0
            while not stop.is_set():
                events = [{"eventId": f"{t}-{n}-{j}", "eventType": "click", "itemId": f"item-{j}",
                           "sentAt": time.time()} for j in range(per_call)]
                start = time.perf_counter()
                store.put_events("track", f"user-{t}", f"sess-{t}", events)
                latencies[t].append(time.perf_counter() - start)
                n += 1

        pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        began = time.perf_counter()
        for th in pool:
            th.start()
        time.sleep(seconds)
        stop.set()
        for th in pool:
            th.join()
        elapsed = time.perf_counter() - began
        stored = store.counts()["events"]
    calls = sorted(x for lat in latencies for x in lat)
    assert stored == len(calls) * per_call, (stored, len(calls))
    return {"mode": mode, "events_s": stored / elapsed, "calls_s": len(calls) / elapsed,
            "p50_ms": 1e3 * statistics.median(calls),
            "p99_ms": 1e3 * calls[min(len(calls) - 1, int(0.99 * len(calls)))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per store (default 3)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-call", type=int, default=10, help="events per call (default 10)")
    parser.add_argument("--dir", default=None, help="directory for the stores (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(f"{args.threads} threads x {args.per_call} events per call, {args.seconds:g} s per store,"
              f" stores in {directory}")
        print(f"{'store':<16} {'events/s':>10} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        results = [run(mode, directory, args.threads, args.per_call, args.seconds) for mode in MODES]
        for r in results:
            print(f"{r['mode']:<16} {r['events_s']:>10,.0f} {r['calls_s']:>9,.0f}"
                  f" {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
        base = results[0]["events_s"]
        for r in results[1:]:
            print(f"{r['mode']}: {r['events_s'] / base:.1f}x the commit-per-call baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
