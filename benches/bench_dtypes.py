"""Compressed item tables: single call, rank_batch and top-K per storage dtype (d=64, K=500).

Groups ``rank dtypes d=64 K=500 N=..``, ``rank_batch dtypes d=64 B=256 K=500 N=..`` and
``topk dtypes d=64 k=10 N=..``: one row per dtype (float32, float16, bfloat16, int8) of the same
table, rows cold (the candidate lists rotate over about 2N rows); compare the rows of a group as
ratios (``python benches/report.py bench.json``). N is ``RANKCORE_BENCH_ITEMS`` (default 2,000,000).
``benches/dtypes.py`` times the same dtypes interleaved in one loop and prints the ratios.
"""
import numpy as np
import pytest

import rankcore
from conftest import BENCH_ITEMS, item_table
from rankcore.core.topk import topk

DTYPES = ("float32", "float16", "bfloat16", "int8")
D, K, B = 64, 500, 256
_tables: dict = {}


def table_of(dtype: str) -> rankcore.ItemTable:
    """The shared float32 (BENCH_ITEMS, 64) table stored as ``dtype`` (one conversion per session)."""
    if dtype not in _tables:
        base = item_table(BENCH_ITEMS, D)
        _tables[dtype] = base if dtype == "float32" else rankcore.ItemTable(base.embeddings, dtype=dtype)
    return _tables[dtype]


def _pool(count):
    return np.random.default_rng(0).integers(0, BENCH_ITEMS, size=(count, K), dtype=np.int64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_dtypes(benchmark, dtype):
    table = table_of(dtype)
    user = (np.random.default_rng(1).standard_normal(D) / np.sqrt(D)).astype(np.float32)
    pool = _pool(max(64, min(4096, 2 * BENCH_ITEMS // K)))
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % pool.shape[0]
        return rankcore.rank(user, table, pool[state["i"]])

    benchmark.group = f"rank dtypes d={D} K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(dtype=dtype, table_bytes=table.nbytes)
    benchmark(call)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rank_batch_dtypes(benchmark, dtype):
    table = table_of(dtype)
    users = (np.random.default_rng(2).standard_normal((B, D)) / np.sqrt(D)).astype(np.float32)
    pool = _pool(max(2 * B, min(8192, 2 * BENCH_ITEMS // K)))
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + B) % (pool.shape[0] - B)
        return rankcore.rank_batch(users, table, pool[state["i"]:state["i"] + B], k=10, threads=1)

    benchmark.group = f"rank_batch dtypes d={D} B={B} K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(dtype=dtype, items_per_call=B * K)
    benchmark(call)


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_dtypes(benchmark, dtype):
    table = table_of(dtype)
    user = (np.random.default_rng(3).standard_normal(D) / np.sqrt(D)).astype(np.float32)
    benchmark.group = f"topk dtypes d={D} k=10 N={BENCH_ITEMS}"
    benchmark.extra_info.update(dtype=dtype)
    benchmark(lambda: topk(user, table, 10, threads=1))
