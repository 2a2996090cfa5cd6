"""faiss approximate top-K (``rankcore.model.ann.AnnIndex``) beside the exact ``topk``, one user.

Group ``ann d=64 k=25 N=..``: the exact ``rankcore.topk`` (one thread), the hnsw index's
``search`` (rows with exact logits) and ``topk`` (plus the normaliser estimate), one thread each,
on the clustered catalog of ``rankcore.model.synthetic`` with item bias. Each faiss case records
its recall@25 against the exact top-25 over 50 users in ``extra_info``. The size follows
``RANKCORE_BENCH_ITEMS`` (CI: small). The hnsw build of 2M rows takes minutes; the build time,
index size and percentiles come from ``benches/ann_vs_exact.py``.
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
    if "index" not in _cache:
        m = synthetic(n_users=50, n_items=BENCH_ITEMS, item_bias=True, with_context=False,
                      with_metadata=False, with_history=False)
        _cache["model"] = m
        _cache["index"] = AnnIndex.build(m, "hnsw")
        _cache["truth"] = [set(rankcore.topk(u, m.item_table, K).items.tolist())
                           for u in m.user_embeddings]
    return _cache["model"], _cache["index"], _cache["truth"]


def _recall(index, model, truth):
    rows, _ = index.search(model.user_embeddings, K)
    return float(np.mean([len(t & set(r.tolist())) / K for t, r in zip(truth, rows)]))


@pytest.mark.parametrize("impl", ["exact-topk", "hnsw-search", "hnsw-topk"])
def test_ann_single(benchmark, impl):
    model, index, truth = _setup()
    user = model.user_embeddings[0]
    faiss.omp_set_num_threads(1)
    if impl == "exact-topk":
        fn = lambda: rankcore.topk(user, model.item_table, K, threads=1)  # noqa: E731
    elif impl == "hnsw-search":
        fn = lambda: index.search(user, K)  # noqa: E731
        benchmark.extra_info["recall@25"] = _recall(index, model, truth)
    else:
        fn = lambda: index.topk(user, K)  # noqa: E731
    benchmark.group = f"ann d=64 k={K} N={BENCH_ITEMS}"
    result = benchmark(fn)
    assert result is not None
