"""Campaign under load and misuse: a bounded PutEvents overlay, atomic filter registration, and
refusal of a bare string where a list of IDs is expected.

The overlay's bound is measured in entries (``recent_interactions`` with a large ``limit``) and in
traced bytes, never in time.
"""
import sys
import threading
import tracemalloc

import numpy as np
import pytest

from rankcore import Campaign
from rankcore.datasets import synthetic
from rankcore.model import RECENT_INTERACTIONS_PER_TYPE as BOUND

MODEL = synthetic(20, 300, 8, seed=11)
N_ITEMS = 300
EVERYTHING = 10**9  # a recent_interactions limit above any bound: returns all that is held


def per_type(data, user_id):
    """{event type: [item rows, oldest first]} of everything ``data`` holds for ``user_id``."""
    rows, types = data.recent_interactions(user_id, limit=EVERYTHING)
    out: dict = {}
    for r, t in zip(rows.tolist(), types):
        out.setdefault(t, []).append(r)
    return out


# ----------------------------------------------------------------- bounded PutEvents overlay
def test_put_events_overlay_keeps_the_newest_per_type_within_the_bound():
    c = Campaign(MODEL, name="bounded")
    n = 5 * BOUND
    for start in range(0, n, 10):  # PutEvents takes at most 10 events a call
        c.put_events("stream-user", [
            {"itemId": str(j % N_ITEMS), "eventType": "view" if j % 2 else "click", "sentAt": float(j)}
            for j in range(start, start + 10)])
    held = per_type(c.data, "stream-user")
    assert set(held) == {"view", "click"}
    assert held["view"] == [j % N_ITEMS for j in range(n) if j % 2][-BOUND:]
    assert held["click"] == [j % N_ITEMS for j in range(n) if not j % 2][-BOUND:]
    # an event older than everything held is not kept; a newer one pushes out the oldest
    c.put_events("stream-user", [{"itemId": "299", "eventType": "VIEW", "sentAt": -1.0}])
    assert per_type(c.data, "stream-user")["view"] == held["view"]
    c.put_events("stream-user", [{"itemId": "298", "eventType": "view", "sentAt": 1e12}])
    assert per_type(c.data, "stream-user")["view"] == held["view"][1:] + [298]


def test_put_events_overlay_filters_see_the_newest_events():
    c = Campaign(MODEL, name="seen")
    arn = c.create_filter("seen", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")')
    for start in range(0, 3 * BOUND, 10):  # views of items 0..299 in order, three times over
        c.put_events("u", [{"itemId": str(j % N_ITEMS), "eventType": "view", "sentAt": float(j)}
                           for j in range(start, start + 10)])
    newest = {str(j % N_ITEMS) for j in range(3 * BOUND - BOUND, 3 * BOUND)}
    ids = [str(i) for i in range(N_ITEMS)]
    kept = set(c.rank("u", ids, filter=arn).scored_item_ids)
    assert kept == set(ids) - newest and kept  # only the BOUND newest views exclude items


def test_record_interactions_memory_stays_bounded():
    c = Campaign(MODEL, name="memory")
    data = c.data
    types = ["view", "click", "buy"]

    def record(start, n):
        rows = [j % N_ITEMS for j in range(start, start + n)]
        data.record_interactions("heavy", rows, [types[j % 3] for j in range(start, start + n)],
                                 [float(j) for j in range(start, start + n)])

    record(0, 10 * BOUND)
    data.recent_interactions("heavy")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for start in range(10 * BOUND, 10 * BOUND + 40_000, 4_000):
            record(start, 4_000)
        data.recent_interactions("heavy")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = per_type(data, "heavy")
    assert sorted(held) == sorted(types)
    assert all(len(v) == BOUND for v in held.values())
    # 40,000 more events held unbounded would take megabytes; the bounded overlay only replaces
    assert grown < 256 * 1024, grown


def test_many_event_types_stay_bounded():
    c = Campaign(MODEL, name="types")
    cap = c.data.MAX_EVENT_TYPES_PER_USER
    n = 3 * cap
    c.data.record_interactions("u", [j % N_ITEMS for j in range(n)], [f"t{j}" for j in range(n)],
                               [float(j) for j in range(n)])
    held = per_type(c.data, "u")
    assert sorted(held) == sorted(f"t{j}" for j in range(n - cap, n))  # the newest types stay


def test_record_interactions_is_thread_safe_under_a_tiny_switch_interval():
    c = Campaign(MODEL, name="threads")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def work(k):
            for i in range(BOUND):
                c.data.record_interactions("u", [i], [f"e{k}"], [float(i)])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    held = per_type(c.data, "u")
    assert held == {f"e{k}": list(range(BOUND)) for k in range(4)}


# ----------------------------------------------------------------- atomic filter registration
def test_concurrent_create_and_delete_filter_lose_nothing():
    c = Campaign(MODEL, name="races")
    expression = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")'
    n_threads, per_thread = 8, 300
    created = [[] for _ in range(n_threads)]
    deleted = [[] for _ in range(n_threads)]
    errors = []

    def work(k):
        try:
            for i in range(per_thread):
                arn = c.create_filter(f"f{k}-{i}", expression)
                created[k].append(arn)
                if i % 3 == 0:
                    c.delete_filter(arn)
                    deleted[k].append(arn)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors  # a delete of a filter whose create was lost raises
    expected = {a for part in created for a in part} - {a for part in deleted for a in part}
    assert len(expected) == n_threads * per_thread * 2 // 3
    assert set(c.filters) == expected


# ----------------------------------------------------------------- bare strings for ID lists
@pytest.mark.parametrize("bad", ["3410", b"3410"])
def test_rank_refuses_a_bare_string_of_item_ids(bad):
    c = Campaign(MODEL, name="strings")
    with pytest.raises(TypeError, match="item_ids"):
        c.rank("12", bad)
    with pytest.raises(TypeError, match="item_ids"):
        c.rank_batch([("12", bad)])
    with pytest.raises(TypeError, match="item_ids"):
        c.rank_batch([{"userId": "12", "inputList": bad}])
    with pytest.raises(TypeError, match="flat_ids"):
        c.rank_many(["12"], bad, np.array([0, len(bad)]))
    with pytest.raises(TypeError, match="user_ids"):
        c.rank_many(bad, ["1"] * len(bad), np.array([0] * len(bad) + [len(bad)]))


def test_rank_still_takes_any_sequence_of_ids():
    c = Campaign(MODEL, name="sequences")
    ids = ["3", "4", "10"]
    expected = c.rank("12", ids).scored_item_ids
    assert c.rank("12", tuple(ids)).scored_item_ids == expected
    assert c.rank("12", iter(ids)).scored_item_ids == expected
    assert c.rank("12", np.array(ids)).scored_item_ids == expected
    assert c.rank_batch([("12", (i for i in ids))])[0].scored_item_ids == expected
