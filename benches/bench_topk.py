"""Exact catalog-wide top-K: rankcore backends beside faiss ``IndexFlatIP.search`` and a read probe.

Groups ``topk d=64 k=25 N=..`` (one user, one thread, with ``np.sum`` over the table as the time to
read it once) and ``topk_batch d=64 B=.. k=25 N=..`` (a batch of users, all threads). faiss searches
the bias-augmented vectors (item ``[e, bias]``, user ``[u, 1]``), so its inner product is the same
logit; rankcore also computes the softmax normaliser. ``benches/topk_vs_faiss.py`` prints the same
comparison as ratios without pytest. Run: ``pytest benches/bench_topk.py --benchmark-json=topk.json``.
"""
import numpy as np
import pytest

import rankcore
from baselines import faiss
from conftest import BENCH_ITEMS

D, K = 64, 25
BATCH = 64 if BENCH_ITEMS < 1_000_000 else 1000
_cache: dict = {}


def _data():
    if "table" not in _cache:
        rng = np.random.default_rng(7)
        emb = rng.standard_normal((BENCH_ITEMS, D), dtype=np.float32)
        emb *= np.float32(1 / np.sqrt(D))
        bias = (0.1 * rng.standard_normal(BENCH_ITEMS)).astype(np.float32)
        _cache["table"] = rankcore.ItemTable(emb, bias)
        _cache["augmented"] = np.hstack([emb, bias[:, None]])
        users = rng.standard_normal((BATCH, D)).astype(np.float32)
        _cache["users"] = users
        _cache["users_aug"] = np.hstack([users, np.ones((BATCH, 1), dtype=np.float32)])
    return _cache


def _faiss_index():
    if faiss is None:
        pytest.skip("faiss not installed")
    if "index" not in _cache:
        index = faiss.IndexFlatIP(D + 1)
        index.add(_data()["augmented"])
        _cache["index"] = index
    return _cache["index"]


SINGLE = [f"rankcore-{b}" for b in rankcore.available_backends()] + ["faiss-flatip", "read-numpy-sum"]


@pytest.mark.parametrize("impl", SINGLE)
def test_topk_single(benchmark, impl):
    data = _data()
    table, user = data["table"], data["users"][0]
    if impl.startswith("rankcore-"):
        backend = impl.split("-", 1)[1]
        rankcore.topk(user, table, K, threads=1, backend=backend)  # warm up (numba compiles)
        fn = lambda: rankcore.topk(user, table, K, threads=1, backend=backend)  # noqa: E731
    elif impl == "faiss-flatip":
        index = _faiss_index()
        q = data["users_aug"][:1]
        faiss.omp_set_num_threads(1)
        fn = lambda: index.search(q, K)  # noqa: E731
    else:
        fn = lambda: table.data.sum()  # noqa: E731
    benchmark.group = f"topk d={D} k={K} N={BENCH_ITEMS} (1 thread)"
    benchmark.extra_info.update(d=D, k=K, N=BENCH_ITEMS, impl=impl, threads=1)
    benchmark(fn)


BATCH_IMPLS = [f"rankcore-{b}" for b in rankcore.available_backends() if b != "numpy"] + ["faiss-flatip"]


@pytest.mark.parametrize("impl", BATCH_IMPLS)
def test_topk_batch(benchmark, impl):
    data = _data()
    table, users = data["table"], data["users"]
    if impl.startswith("rankcore-"):
        backend = impl.split("-", 1)[1]
        rankcore.topk_batch(users[:2], table, K, backend=backend)
        fn = lambda: rankcore.topk_batch(users, table, K, backend=backend)  # noqa: E731
    else:
        index = _faiss_index()
        faiss.omp_set_num_threads(rankcore.build_info()["threads"])
        fn = lambda: index.search(data["users_aug"], K)  # noqa: E731
    benchmark.group = f"topk_batch d={D} B={BATCH} k={K} N={BENCH_ITEMS} (all threads)"
    benchmark.extra_info.update(d=D, k=K, N=BENCH_ITEMS, B=BATCH, impl=impl)
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
