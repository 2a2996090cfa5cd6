"""Single-call and batched ranking: rankcore backends beside NumPy, faiss and numba baselines.

Groups are named ``rank d=.. K=.. N=..`` (single calls) and ``rank_batch d=.. B=.. K=.. N=..``;
within a group compare the rows as ratios (``python benches/report.py bench.json``).
Run: ``pytest benches/bench_score.py --benchmark-json=bench.json``.
"""
import numpy as np
import pytest

import rankcore
from baselines import faiss, faiss_logits, faiss_path, numba_plain, numba_plain_batch, numpy_naive
from conftest import BENCH_ITEMS, item_table

BACKENDS = rankcore.available_backends()
SIZES_N = sorted({min(100_000, BENCH_ITEMS), BENCH_ITEMS})
SINGLE = [(d, k, n) for n in SIZES_N for d in (64, 128) for k in (50, 500)]
IMPLS = [f"rankcore-{b}" for b in BACKENDS] + ["numpy-naive", "faiss+numpy", "numba-plain"]


def _candidates(n, k, count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(count, k), dtype=np.int64)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("d,k,n", SINGLE, ids=[f"d{d}-K{k}-N{n}" for d, k, n in SINGLE])
def test_rank_single(benchmark, impl, d, k, n):
    table = item_table(n, d)
    emb = table.data if table.padded_dim == d else np.ascontiguousarray(table.embeddings)
    user = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    # rotate over enough candidate lists to touch about 2N rows, so that (as in serving) the
    # rows are not cache-hot: a 2M x 64 table is 512 MB, far beyond the last-level cache
    pool = _candidates(n, k, max(64, min(4096, 2 * n // k)))
    state = {"i": 0}

    def next_idx():
        state["i"] = (state["i"] + 1) % pool.shape[0]
        return pool[state["i"]]

    if impl.startswith("rankcore-"):
        backend = impl.split("-", 1)[1]
        rankcore.rank(user, table, pool[0], backend=backend)  # warm up (numba compiles)
        fn = lambda: rankcore.rank(user, table, next_idx(), backend=backend)  # noqa: E731
    elif impl == "numpy-naive":
        fn = lambda: numpy_naive(user, emb, next_idx())  # noqa: E731
    elif impl == "faiss+numpy":
        if faiss is None:
            pytest.skip("faiss not installed")
        fn = lambda: faiss_path(user, emb, next_idx())  # noqa: E731
    else:
        numba_plain(user, emb, pool[0])
        fn = lambda: numba_plain(user, emb, next_idx())  # noqa: E731
    benchmark.group = f"rank d={d} K={k} N={n}"
    benchmark.extra_info.update(d=d, K=k, N=n, impl=impl)
    benchmark(fn)


BATCH_IMPLS = [f"rankcore-{b}" for b in BACKENDS if b != "numpy"] + ["numpy-naive", "faiss+numpy", "numba-plain-prange"]


@pytest.mark.parametrize("impl", BATCH_IMPLS)
def test_rank_batch(benchmark, impl):
    d, k, b, n = 64, 500, 1024, BENCH_ITEMS
    table = item_table(n, d)
    emb = table.data
    users = np.random.default_rng(2).standard_normal((b, d)).astype(np.float32)
    cands = _candidates(n, k, b, seed=3)
    if impl.startswith("rankcore-"):
        backend = impl.split("-", 1)[1]
        rankcore.rank_batch(users[:2], table, cands[:2], backend=backend)
        fn = lambda: rankcore.rank_batch(users, table, cands, backend=backend, threads=2)  # noqa: E731
    elif impl == "numpy-naive":
        def fn():
            logits = np.einsum("bkd,bd->bk", emb[cands], users)
            e = np.exp(logits - logits.max(1, keepdims=True))
            s = e / e.sum(1, keepdims=True)
            order = np.argsort(-s, axis=1, kind="stable")
            return order, np.take_along_axis(s, order, 1)
    elif impl == "faiss+numpy":
        if faiss is None:
            pytest.skip("faiss not installed")

        def fn():
            logits = faiss_logits(users, emb, cands)
            e = np.exp(logits - logits.max(1, keepdims=True))
            s = e / e.sum(1, keepdims=True)
            order = np.argsort(-s, axis=1, kind="stable")
            return order, np.take_along_axis(s, order, 1)
    else:
        out_o = np.empty((b, k), dtype=np.int64)
        out_s = np.empty((b, k), dtype=np.float32)
        numba_plain_batch(users[:2], emb, cands[:2], out_o[:2], out_s[:2])
        fn = lambda: numba_plain_batch(users, emb, cands, out_o, out_s)  # noqa: E731
    benchmark.group = f"rank_batch d={d} B={b} K={k} N={n}"
    benchmark.extra_info.update(d=d, K=k, B=b, N=n, impl=impl, items_per_call=b * k)
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)


OVERHEAD_IMPLS = ["rankcore.rank", "rankcore.score", "_core.rank_one", "_core.rank (general)",
                  "rank (converting)", "numpy-naive"]


@pytest.mark.parametrize("impl", OVERHEAD_IMPLS)
def test_call_overhead(benchmark, impl):
    """Per-call cost with K=1 on a small table: what the layers add when there is no work.

    ``rankcore.rank`` minus ``_core.rank_one`` is the Python wrapper's own cost (the issue's
    budget is 1 us); ``_core.rank (general)`` is the pybind11 entry point the converting
    path ends in; ``rank (converting)`` passes a float64 user and a list of candidates.
    """
    rng = np.random.default_rng(1)
    table = rankcore.ItemTable(rng.standard_normal((1000, 64), dtype=np.float32))  # small: no cache misses
    user = rng.standard_normal(64).astype(np.float32)
    cands = np.array([7], dtype=np.int64)
    if impl == "rankcore.rank":
        fn = lambda: rankcore.rank(user, table, cands)  # noqa: E731
    elif impl == "rankcore.score":
        fn = lambda: rankcore.score(user, table, cands)  # noqa: E731
    elif impl.startswith("_core"):
        core = rankcore.core.native.core
        if core is None:
            pytest.skip("the C++ extension is not built")
        data, bias, dim = table._data, table._bias, table._dim
        if impl == "_core.rank_one":
            fn = lambda: core.rank_one(user, data, bias, dim, cands, None, rankcore.Ranking)  # noqa: E731
        else:
            u2 = user[None, :]
            fn = lambda: core.rank(u2, data, bias, dim, cands, None, False, -1, 1)  # noqa: E731
    elif impl == "rank (converting)":
        u64, lst = user.astype(np.float64), [7]
        fn = lambda: rankcore.rank(u64, table, lst)  # noqa: E731
    else:
        emb = table.data
        fn = lambda: numpy_naive(user, emb, cands)  # noqa: E731
    benchmark.group = "call overhead K=1"
    benchmark.extra_info.update(impl=impl)
    benchmark(fn)
