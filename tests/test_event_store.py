"""The durable event store: round trips, group commit under threads, SIGKILL, corruption, retention.

The SIGKILL test is the one that matters most: a child process writes events from several threads
and prints each batch's event IDs once ``put_events`` has returned; the test kills it mid-stream
and every printed ID must be in the reopened store.
"""
import datetime as dt
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest

import rankcore
from rankcore.errors import EventStoreError
from rankcore.personalize.event_store import EventRecord, EventStore, ItemRecord, UserRecord


def _events(prefix, n, **extra):
    return [dict({"eventId": f"{prefix}-{j}", "eventType": "click", "itemId": f"item-{j}",
                  "sentAt": 1_700_000_000 + j}, **extra) for j in range(n)]


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "events.db") as s:
        yield s


def test_round_trip_of_events_items_and_users(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path) as s:
        s.put_events("track-1", None, "sess-1", [
            {"eventId": "e1", "eventType": "click", "itemId": "i1", "sentAt": 1_700_000_000.5,
             "eventValue": 4, "properties": '{"device": "phone"}', "recommendationId": "rec-1",
             "impression": ["i1", "i2", "i3"]},
            {"eventType": "watch", "sentAt": dt.datetime(2024, 1, 2, 3, 4, 5)},
        ])
        s.put_items("arn:items", [{"itemId": "i1", "properties": '{"genre": "drama"}'},
                                  {"itemId": "i2", "properties": {"genre": "comedy"}}])
        s.put_users("arn:users", [{"userId": "u1", "properties": '{"age": "30"}'}, {"userId": "u2"}])
        assert s.last_sequence() == 6
        assert s.counts() == {"events": 2, "items": 2, "users": 2}
    with EventStore(path) as s:  # reopened: everything came from disk
        records = s.tail(0)
        assert [r.sequence for r in records] == [1, 2, 3, 4, 5, 6]
        assert [r.kind for r in records] == ["event", "event", "item", "item", "user", "user"]
        e1, e2, i1, i2, u1, u2 = records
        assert isinstance(e1, EventRecord) and isinstance(i1, ItemRecord) and isinstance(u1, UserRecord)
        assert (e1.tracking_id, e1.user_id, e1.session_id, e1.event_id) == ("track-1", None, "sess-1", "e1")
        assert (e1.event_type, e1.event_value, e1.item_id, e1.sent_at) == ("click", 4.0, "i1", 1_700_000_000.5)
        assert json.loads(e1.properties) == {"device": "phone"}
        assert (e1.recommendation_id, e1.impression) == ("rec-1", ("i1", "i2", "i3"))
        assert e2.sent_at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()
        assert e2.event_id and e2.event_id != e1.event_id  # generated when absent
        assert (e2.item_id, e2.event_value, e2.properties, e2.impression) == (None, None, None, None)
        assert (i1.dataset_arn, i1.item_id, json.loads(i1.properties)) == ("arn:items", "i1", {"genre": "drama"})
        assert json.loads(i2.properties) == {"genre": "comedy"}
        assert (u1.user_id, json.loads(u1.properties), u2.user_id, u2.properties) == ("u1", {"age": "30"}, "u2", None)
        assert e1.received_at <= i1.received_at <= u1.received_at
        assert list(s.replay(after=2, limit=3)) == records[2:5]
        assert s.tail(4, limit=1) == [u1]
        assert s.tail(6) == []


@pytest.mark.parametrize("call, error, match", [
    (lambda s: s.put_events(7, None, "s", _events("a", 1)), TypeError, "tracking_id"),
    (lambda s: s.put_events("t", "", "s", _events("a", 1)), ValueError, "user_id"),
    (lambda s: s.put_events("t", None, None, _events("a", 1)), ValueError, "session_id"),
    (lambda s: s.put_events("t", None, "s", []), ValueError, "events"),
    (lambda s: s.put_events("t", None, "s", {"eventType": "x"}), TypeError, "events"),
    (lambda s: s.put_events("t", None, "s", _events("a", 2) + ["x"]), TypeError, r"events\[2\]"),
    (lambda s: s.put_events("t", None, "s", [{"eventType": "click"}]), ValueError, "sentAt"),
    (lambda s: s.put_events("t", None, "s", [{"eventType": "c", "sentAt": "now"}]), TypeError, "sentAt"),
    (lambda s: s.put_events("t", None, "s", [{"eventType": "c", "sentAt": float("nan")}]), ValueError, "sentAt"),
    (lambda s: s.put_events("t", None, "s", [{"sentAt": 1}]), ValueError, "eventType"),
    (lambda s: s.put_events("t", None, "s", _events("a", 1, eventValue=True)), TypeError, "eventValue"),
    (lambda s: s.put_events("t", None, "s", _events("a", 1, properties="{bad")), ValueError, "properties"),
    (lambda s: s.put_events("t", None, "s", _events("a", 1, properties="[1]")), ValueError, "JSON object"),
    (lambda s: s.put_events("t", None, "s", _events("a", 1, impression="i1")), TypeError, "impression"),
    (lambda s: s.put_events("t", None, "s", _events("a", 1, itemID="typo")), ValueError, "itemID"),
    (lambda s: s.put_items("arn", [{"itemId": 5}]), TypeError, "itemId"),
    (lambda s: s.put_items("arn", [{"properties": "{}"}]), ValueError, "itemId"),
    (lambda s: s.put_users(None, [{"userId": "u"}]), ValueError, "dataset_arn"),
    (lambda s: s.put_users("arn", [{"userId": "u", "properties": 3}]), TypeError, "properties"),
])
def test_wrong_input_raises_and_stores_nothing(store, call, error, match):
    with pytest.raises(error, match=match):
        call(store)
    assert store.last_sequence() == 0 and store.tail(0) == []


def test_constructor_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="path"):
        EventStore(":memory:")
    with pytest.raises(TypeError, match="path"):
        EventStore(None)
    for kwargs in ({"retention_days": 0}, {"retention_rows": -1}, {"commit_interval": -1},
                   {"max_batch": 0}, {"busy_timeout": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            EventStore(tmp_path / "x.db", **kwargs)


def test_eight_concurrent_writers_are_all_durable_and_ordered(tmp_path):
    path = tmp_path / "events.db"
    threads, calls, per_call = 8, 25, 10
    errors = []

    def writer(t):
        try:
            for c in range(calls):
                s.put_events("track", f"user-{t}", f"sess-{t}", _events(f"{t}-{c}", per_call))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    with EventStore(path, commit_interval=0.001) as s:
        pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    assert errors == []
    with EventStore(path) as s:
        records = list(s.replay())
        assert s.last_sequence() == threads * calls * per_call
    assert [r.sequence for r in records] == list(range(1, threads * calls * per_call + 1))
    for t in range(threads):
        mine = [r.event_id for r in records if r.user_id == f"user-{t}"]
        # each thread's calls were sequential, so its events appear in exactly the order it sent them
        assert mine == [f"{t}-{c}-{j}" for c in range(calls) for j in range(per_call)]


_CHILD = textwrap.dedent("""
    import os, sys, threading
    from rankcore.personalize.event_store import EventStore
    store = EventStore(sys.argv[1], commit_interval=0.001)

    def run(t):
        n = 0
        while True:
            ids = [f"{t}-{n}-{j}" for j in range(10)]
            store.put_events("track", f"user-{t}", f"sess-{t}",
                             [{"eventId": i, "eventType": "click", "itemId": i, "sentAt": 1.0} for i in ids])
            os.write(1, (",".join(ids) + "\\n").encode())  # one write: lines never interleave
            n += 1

    for t in range(4):
        threading.Thread(target=run, args=(t,), daemon=True).start()
    threading.Event().wait()
""")


def test_every_acknowledged_event_survives_sigkill(tmp_path):
    path = tmp_path / "events.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(rankcore.__file__)), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    try:
        lines = []
        while len(lines) < 60:
            line = child.stdout.readline()
            assert line, f"writer died early: {child.stderr.read().decode()[-2000:]}"
            lines.append(line)
        child.send_signal(signal.SIGKILL)
        child.wait()
        lines += child.stdout.readlines()  # acknowledged before the kill, still in the pipe
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    acked = {i for line in lines if line.endswith(b"\n") for i in line.decode().strip().split(",")}
    assert len(acked) >= 600
    with EventStore(path) as s:  # the WAL left by the killed process is recovered, not refused
        stored = {r.event_id for r in s.replay()}
        assert acked <= stored
        assert [r.sequence for r in s.replay()] == list(range(1, s.last_sequence() + 1))


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 300)
    with pytest.raises(EventStoreError, match=r"garbage\.db.*not a (SQLite )?database"):
        EventStore(garbage)
    assert garbage.read_bytes() == b"this is not a database\n" * 300
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(EventStoreError, match=r"foreign\.db: not an event store"):
        EventStore(foreign)


def test_a_corrupted_store_is_refused(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path) as s:
        for c in range(40):
            s.put_events("t", "u", "s", _events(f"{c}", 10, properties=json.dumps({"pad": "x" * 300})))
    size = path.stat().st_size
    assert size > 16 * 4096
    with open(path, "r+b") as f:  # overwrite a run of table pages in the middle of the file
        f.seek(4 * 4096)
        f.write(b"\xa5" * (8 * 4096))
    with pytest.raises(EventStoreError, match=r"events\.db.*(corrupt|malformed)"):
        EventStore(path)
    assert path.stat().st_size == size


def test_a_store_locked_by_a_stuck_writer_fails_with_a_clear_error(tmp_path):
    path = tmp_path / "events.db"
    EventStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(EventStoreError, match=r"events\.db: locked by another writer"):
            EventStore(path, busy_timeout=0.05)
        holder.execute("ROLLBACK")
        with EventStore(path, busy_timeout=0.05) as s:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(EventStoreError, match="locked"):  # a put fails, it does not hang
                s.put_events("t", None, "s", _events("a", 1))
            holder.execute("ROLLBACK")
            s.put_events("t", None, "s", _events("b", 1))  # and the store works on afterwards
            assert [r.event_id for r in s.tail(0)] == ["b-0"]
    finally:
        holder.close()


def test_retention_by_rows_and_days_and_latest_items_and_users(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path, retention_rows=15, retention_days=1) as s:
        s.put_events("t", "u", "s", _events("old", 10))
        s.put_items("arn", [{"itemId": "i1", "properties": '{"v": 1}'}, {"itemId": "i2"}])
        s.put_items("arn", [{"itemId": "i1", "properties": '{"v": 2}'}])
        s.put_items("other-arn", [{"itemId": "i1", "properties": '{"v": 3}'}])
        s.put_users("arn", [{"userId": "u1", "properties": '{"v": 1}'}])
        s.put_users("arn", [{"userId": "u1", "properties": '{"v": 2}'}])
        s.put_events("t", "u", "s", _events("new", 10))
        last = s.last_sequence()
        received = [r.received_at for r in s.tail(0) if r.kind == "event"]
        assert s.compact(now=received[0]) == {"events": 5, "items": 1, "users": 1}
        events = [r.event_id for r in s.tail(0) if r.kind == "event"]
        assert events == [f"old-{j}" for j in range(5, 10)] + [f"new-{j}" for j in range(10)]
        items = {(r.dataset_arn, r.item_id): json.loads(r.properties or "null") for r in s.tail(0) if r.kind == "item"}
        assert items == {("arn", "i1"): {"v": 2}, ("arn", "i2"): None, ("other-arn", "i1"): {"v": 3}}
        assert [json.loads(r.properties) for r in s.tail(0) if r.kind == "user"] == [{"v": 2}]
        # a day and a bit later every event is past retention; items and users stay
        assert s.compact(now=received[-1] + 86400 + 1)["events"] == 15
        assert s.counts() == {"events": 0, "items": 3, "users": 1}
        assert s.last_sequence() == last  # never reused: a poller's cursor stays valid
        s.put_events("t", "u", "s", _events("later", 1))
        assert [r.sequence for r in s.tail(last)] == [last + 1]


def test_compaction_gives_space_back(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path, retention_rows=10) as s:
        for c in range(30):
            s.put_events("t", "u", "s", _events(f"{c}", 10, properties=json.dumps({"pad": "x" * 500})))
    before = path.stat().st_size
    with EventStore(path, retention_rows=10) as s:
        assert s.compact()["events"] == 290
        assert s.counts()["events"] == 10
    assert path.stat().st_size < before / 4


def test_interactions_csv_export(tmp_path, store):
    store.put_events("t1", None, "sess-a", [  # anonymous, the session signs in later as u9
        {"eventType": "click", "itemId": "i1", "sentAt": 1_700_000_000.9},
        {"eventType": "view", "sentAt": 1_700_000_001}])  # no itemId: skipped
    store.put_events("t1", "u9", "sess-a", [{"eventType": "buy", "itemId": "i2", "sentAt": 1_700_000_002,
                                              "eventValue": 2.5}])
    store.put_events("t2", None, "sess-b", [{"eventType": "click", "itemId": "i3", "sentAt": 1_700_000_003}])
    out = tmp_path / "interactions.csv"
    assert store.export_interactions_csv(out) == 3
    frame = pd.read_csv(out, dtype={"USER_ID": str, "ITEM_ID": str})
    assert list(frame.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]
    assert frame["USER_ID"].tolist() == ["u9", "u9", "sess-b"]
    assert frame["ITEM_ID"].tolist() == ["i1", "i2", "i3"]
    assert frame["TIMESTAMP"].tolist() == [1_700_000_000, 1_700_000_002, 1_700_000_003]
    assert frame["TIMESTAMP"].dtype.kind == "i"
    assert frame["EVENT_TYPE"].tolist() == ["click", "buy", "click"]
    assert frame["EVENT_VALUE"].isna().tolist() == [True, False, True] and frame["EVENT_VALUE"][1] == 2.5
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    buf = io.StringIO()  # one tracker, no event value: no EVENT_VALUE column
    assert store.export_interactions_csv(buf, tracking_id="t2") == 1
    assert buf.getvalue() == "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nsess-b,i3,1700000003,click\n"
    with pytest.raises(TypeError, match="path_or_file"):
        store.export_interactions_csv(io.BytesIO())


def test_a_second_store_on_the_same_file_tails_new_rows(tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path) as a, EventStore(path) as b:
        assert b.tail(0) == []
        a.put_events("t", "u", "s", _events("a1", 3))
        seen = b.tail(0)
        assert [r.event_id for r in seen] == ["a1-0", "a1-1", "a1-2"]
        b.put_items("arn", [{"itemId": "i1"}])  # both write: one sequence across processes
        a.put_users("arn", [{"userId": "u1"}])
        new = b.tail(seen[-1].sequence)
        assert [(r.kind, r.sequence) for r in new] == [("item", 4), ("user", 5)]
        assert a.last_sequence() == b.last_sequence() == 5
        assert b.tail(5) == []


def test_close_commits_and_then_refuses(tmp_path):
    path = tmp_path / "events.db"
    s = EventStore(path)
    done = []

    def put(t):
        s.put_events("t", None, f"s{t}", _events(f"{t}", 2))
        done.append(t)

    pool = [threading.Thread(target=put, args=(t,)) for t in range(4)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    s.close()
    s.close()  # idempotent
    assert s.closed and sorted(done) == [0, 1, 2, 3]
    for call in (lambda: s.put_events("t", None, "s", _events("x", 1)), lambda: s.tail(0),
                 lambda: s.last_sequence(), lambda: s.compact(), lambda: s.export_interactions_csv(io.StringIO())):
        with pytest.raises(EventStoreError, match="closed"):
            call()
    with EventStore(path) as again:
        assert again.counts()["events"] == 8
