"""End-to-end GetPersonalizedRanking in-process, beside the kernel alone and a hand-written baseline.

Groups (N from ``RANKCORE_BENCH_ITEMS``, default 2,000,000 items; d=64; 500 string IDs per call):

``campaign.rank K=500 N=..``
    ``kernel-rows`` (``rankcore.rank`` on row indices: the floor), ``campaign.rank`` (string IDs
    in, ranked IDs and scores out) and ``baseline`` (dict lookups, NumPy gather/dot, naive softmax,
    stable argsort, ranked ID list).
``get_personalized_ranking K=500 N=..``
    ``client`` (``Client.get_personalized_ranking``: validation, ranking and the boto3-shaped
    response dict) and ``baseline-response`` (the baseline above plus the same response dict).

Targets: ``campaign.rank`` within 2.5x of ``kernel-rows``; both end-to-end rows at least 6x faster
than their baseline. Candidate lists rotate over N/K random draws so item rows are not cache-hot.
Run: ``pytest benches/bench_campaign.py --benchmark-json=campaign.json``.
"""
import uuid

import numpy as np
import pytest

import rankcore
from conftest import BENCH_ITEMS
from rankcore.datasets import synthetic

K = 500
DIM = 64
POOL = max(64, min(4096, BENCH_ITEMS // K))
_state: dict = {}


def setup_model():
    if "model" not in _state:
        model = synthetic(n_users=10_000, n_items=BENCH_ITEMS, dim=DIM, seed=0, with_history=False)
        campaign = rankcore.Campaign(model, name="bench")
        rng = np.random.default_rng(1)
        # enough lists to touch ~N rows, so rows are not cache-hot between calls
        rows = [rng.choice(BENCH_ITEMS, size=min(K, BENCH_ITEMS), replace=False).astype(np.int64)
                for _ in range(POOL)]
        # request IDs as a server gets them: fresh str objects, not the model's own
        ids = [[str(int(r)) for r in rr] for rr in rows]
        _state.update(model=model, campaign=campaign, client=rankcore.Client([campaign]),
                      rows=rows, ids=ids, i=0, dict=None)
    return _state


def _next():
    _state["i"] = (_state["i"] + 1) % POOL
    return _state["i"]


def _baseline_dict():
    if _state["dict"] is None:  # what a user builds once at start-up
        _state["dict"] = {item: row for row, item in enumerate(_state["model"].item_ids)}
    return _state["dict"]


def baseline_rank(lookup, emb, bias, user, ids):
    known = [(i, lookup[i]) for i in dict.fromkeys(ids) if i in lookup]
    unknown = [i for i in dict.fromkeys(ids) if i not in lookup]
    rows = np.array([r for _, r in known], dtype=np.int64)
    logits = emb[rows] @ user
    if bias is not None:
        logits = logits + bias[rows]
    e = np.exp(logits - logits.max())
    s = e / e.sum()
    order = np.argsort(-s, kind="stable")
    return [known[o][0] for o in order.tolist()], s[order], unknown


@pytest.mark.parametrize("impl", ["kernel-rows", "campaign.rank", "baseline"])
def test_campaign_rank(benchmark, impl):
    st = setup_model()
    model, campaign = st["model"], st["campaign"]
    user_id = "17"
    user = model.user_embeddings[17]
    if impl == "kernel-rows":
        table = model.item_table
        rankcore.rank(user, table, st["rows"][0])  # warm up (numba compiles)
        fn = lambda: rankcore.rank(user, table, st["rows"][_next()])  # noqa: E731
    elif impl == "campaign.rank":
        campaign.rank(user_id, st["ids"][0])
        fn = lambda: campaign.rank(user_id, st["ids"][_next()])  # noqa: E731
    else:
        lookup = _baseline_dict()
        emb = np.asarray(model.item_table.embeddings)
        bias = model.item_bias
        fn = lambda: baseline_rank(lookup, emb, bias, user, st["ids"][_next()])  # noqa: E731
    benchmark.group = f"campaign.rank K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(K=K, N=BENCH_ITEMS, d=DIM, impl=impl,
                                id_index=type(model.item_index).__module__)
    benchmark(fn)


@pytest.mark.parametrize("impl", ["client", "baseline-response"])
def test_get_personalized_ranking(benchmark, impl):
    st = setup_model()
    model, campaign, client = st["model"], st["campaign"], st["client"]
    arn = campaign.arn
    if impl == "client":
        client.get_personalized_ranking(campaignArn=arn, userId="17", inputList=st["ids"][0])
        fn = lambda: client.get_personalized_ranking(  # noqa: E731
            campaignArn=arn, userId="17", inputList=st["ids"][_next()])
    else:
        lookup = _baseline_dict()
        emb = np.asarray(model.item_table.embeddings)
        bias = model.item_bias
        users = {uid: row for row, uid in enumerate(model.user_ids)}

        def fn():
            ids = st["ids"][_next()]
            row = users.get("17")
            user = model.user_embeddings[row] if row is not None else model.cold_start
            ranked, scores, unknown = baseline_rank(lookup, emb, bias, user, ids)
            items = [{"itemId": i, "score": round(float(s), 7)} for i, s in zip(ranked, scores)]
            items += [{"itemId": i} for i in unknown]
            return {"personalizedRanking": items, "recommendationId": "RID-" + str(uuid.uuid4())}
    benchmark.group = f"get_personalized_ranking K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(K=K, N=BENCH_ITEMS, d=DIM, impl=impl,
                                id_index=type(model.item_index).__module__)
    benchmark(fn)
