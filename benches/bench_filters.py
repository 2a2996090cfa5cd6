"""Filtered ranking: the cost a Personalize filter adds to a 500-candidate GetPersonalizedRanking.

Group ``filtered rank K=500 N=..`` (``RANKCORE_BENCH_ITEMS`` items, d=64, a synthetic model with
metadata and interaction histories): ``kernel-rows`` (``rankcore.rank`` on rows, the kernel's own
time), ``campaign.rank`` unfiltered, and ``campaign.rank`` with an Items filter and with an
Interactions filter. Target: a filter adds less than the kernel's own time
(``filtered - unfiltered < kernel-rows``).
Run: ``pytest benches/bench_filters.py --benchmark-json=filters.json``.
"""
import numpy as np
import pytest

import rankcore
from conftest import BENCH_ITEMS
from rankcore.datasets import synthetic

K = 500
_state: dict = {}

FILTERS = {
    "items-filter": ("INCLUDE ItemID WHERE Items.GENRE IN ($GENRES) AND Items.PRICE <= $PRICE",
                     {"GENRES": '"Comedy","Drama","Action"', "PRICE": "60"}),
    "interactions-filter": ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "purchase")', {}),
}


def setup():
    if not _state:
        model = synthetic(n_users=10_000, n_items=BENCH_ITEMS, dim=64, seed=0)
        campaign = rankcore.Campaign(model, name="bench")
        arns = {name: campaign.create_filter(name, expr) for name, (expr, _) in FILTERS.items()}
        rng = np.random.default_rng(5)
        rows = [rng.choice(BENCH_ITEMS, size=min(K, BENCH_ITEMS), replace=False) for _ in range(64)]
        users = [str(u) for u in rng.integers(0, 10_000, 64)]
        # make each user's history overlap the candidates, as when re-ranking recent items
        for u, rr in zip(users, rows):
            campaign.put_events(u, [{"itemId": str(int(r)), "eventType": "click", "sentAt": 1.8e9}
                                    for r in rr[:10]])
        _state.update(model=model, campaign=campaign, arns=arns, rows=rows, users=users,
                      ids=[[str(int(r)) for r in rr] for rr in rows], i=0)
    return _state


def _next():
    _state["i"] = (_state["i"] + 1) % 64
    return _state["i"]


@pytest.mark.parametrize("impl", ["kernel-rows", "unfiltered", "items-filter", "interactions-filter"])
def test_filtered_rank(benchmark, impl):
    st = setup()
    c, model = st["campaign"], st["model"]
    if impl == "kernel-rows":
        table = model.item_table
        vecs = [c.user_vector(u) for u in st["users"]]
        fn = lambda: rankcore.rank(vecs[_next()], table, st["rows"][_state["i"]])  # noqa: E731
    elif impl == "unfiltered":
        fn = lambda: c.rank(st["users"][_next()], st["ids"][_state["i"]])  # noqa: E731
    else:
        arn, values = st["arns"][impl], FILTERS[impl][1]
        r = c.rank(st["users"][0], st["ids"][0], filter=arn, filter_values=values)
        assert 0 < len(r.scores) <= K
        fn = lambda: c.rank(st["users"][_next()], st["ids"][_state["i"]], filter=arn,  # noqa: E731
                            filter_values=values)
    benchmark.group = f"filtered rank K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(impl=impl, K=K, N=BENCH_ITEMS)
    benchmark(fn)
