"""Benchmark configuration: pin BLAS/OpenMP threads before NumPy loads, share big tables.

Every benchmark group holds rankcore's backends beside the baselines of the same size, in the
same run, so the ratios in the README come from one table. Sizes shrink with
``RANKCORE_BENCH_ITEMS`` (CI runs the benches once with a small catalog and
``--benchmark-disable`` so that a broken bench fails the build).
"""
import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import rankcore  # noqa: E402

BENCH_ITEMS = int(os.environ.get("RANKCORE_BENCH_ITEMS", "2000000"))

_tables: dict = {}


def item_table(n: int, d: int) -> rankcore.ItemTable:
    """A cached random (n, d) ItemTable (one per size per session)."""
    key = (n, d)
    if key not in _tables:
        if len(_tables) >= 2:  # keep memory bounded: at most two big tables alive
            _tables.pop(next(iter(_tables)))
        rng = np.random.default_rng(n * 1000 + d)
        emb = rng.standard_normal((n, d), dtype=np.float32)
        emb *= np.float32(1 / np.sqrt(d))
        _tables[key] = rankcore.ItemTable(emb)
    return _tables[key]


@pytest.fixture(autouse=True)
def _record_build(benchmark):
    info = rankcore.build_info()
    benchmark.extra_info["rankcore"] = {k: info[k] for k in ("version", "backends", "simd_kernel")}
