"""faiss approximate top-K (``rankcore.model.ann.AnnIndex``) beside the exact ``topk``, one user.

Group ``ann d=64 k=25 N=..``: the exact ``rankcore.topk`` (one thread), and for each index kind
(ivf, the default, and hnsw; default search settings) its ``search`` (rows with exact logits) and
``topk`` (plus the normaliser estimate), one thread each,
on the clustered catalog of ``rankcore.model.synthetic`` with item bias. Each faiss case records
its recall@25 against the exact top-25 over 50 users in ``extra_info``. The size follows
``RANKCORE_BENCH_ITEMS`` (CI: small). The builds of 2M rows take minutes; the build times,
index sizes, cold-cache percentiles and recall sweeps come from ``benches/ann_vs_exact.py``.
Run: ``pytest benches/bench_ann.py --benchmark-json=ann.json``.
"""
import numpy as np
import pytest

import rankcore
from baselines import faiss
from conftest import BENCH_ITEMS
from rankcore.model.ann import AnnIndex
from rankcore.model.synthetic import synthetic

K = 25
_cache: dict = {}


def _setup():
    if faiss is None:
        pytest.skip("faiss not installed")
    if "model" not in _cache:
        m = synthetic(n_users=50, n_items=BENCH_ITEMS, item_bias=True, with_context=False,
                      with_metadata=False, with_history=False)
        _cache["model"] = m
        _cache["truth"] = [set(rankcore.topk(u, m.item_table, K).items.tolist())
                           for u in m.user_embeddings]
    return _cache["model"], _cache["truth"]


def _index(kind):
    if kind not in _cache:
        _cache[kind] = AnnIndex.build(_cache["model"], kind)
    return _cache[kind]


def _recall(index, model, truth):
    rows, _ = index.search(model.user_embeddings, K)
    return float(np.mean([len(t & set(r.tolist())) / K for t, r in zip(truth, rows)]))


@pytest.mark.parametrize("impl", ["exact-topk", "ivf-search", "ivf-topk", "hnsw-search", "hnsw-topk"])
def test_ann_single(benchmark, impl):
    model, truth = _setup()
    user = model.user_embeddings[0]
    if impl == "exact-topk":
        fn = lambda: rankcore.topk(user, model.item_table, K, threads=1)  # noqa: E731
    else:
        kind, what = impl.split("-")
        index = _index(kind)
        faiss.omp_set_num_threads(1)
        method = getattr(index, what)
        fn = lambda: method(user, K)  # noqa: E731
        if what == "search":
            benchmark.extra_info["recall@25"] = _recall(index, model, truth)
    benchmark.group = f"ann d=64 k={K} N={BENCH_ITEMS}"
    result = benchmark(fn)
    assert result is not None
