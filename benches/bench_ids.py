"""String-ID lookup: the native IdIndex beside a Python dict, pandas and the Python fallback.

Group ``id lookup K=500 N=..``: 500 fresh ``str`` IDs (as a server receives them) mapped to rows
(-1 for unknown) on an N-item catalog (``RANKCORE_BENCH_ITEMS``, default 2,000,000).
Target: the native index at least 5x faster than the dict.
Run: ``pytest benches/bench_ids.py --benchmark-json=ids.json``.
"""
import numpy as np
import pytest

from conftest import BENCH_ITEMS
from rankcore.model import ids as _ids
from rankcore.datasets import decimal_id_blob

K = 500
_state: dict = {}


def setup():
    if not _state:
        data, offsets = decimal_id_blob(BENCH_ITEMS)
        rng = np.random.default_rng(7)
        pool = [[str(int(r)) for r in rng.integers(0, BENCH_ITEMS, K)] + ["unknown-id"] for _ in range(64)]
        _state.update(data=data, offsets=offsets, pool=pool, i=0)
    return _state


def _next():
    _state["i"] = (_state["i"] + 1) % 64
    return _state["pool"][_state["i"]]


IMPLS = ["native-IdIndex", "python-dict", "pandas-get_indexer", "PyIdIndex-fallback"]


@pytest.mark.parametrize("impl", IMPLS)
def test_id_lookup(benchmark, impl):
    st = setup()
    if impl == "native-IdIndex":
        core = pytest.importorskip("rankcore._core")
        index = core.IdIndex.from_blob(st["data"], st["offsets"])
        fn = lambda: index.lookup(_next())  # noqa: E731
    elif impl == "python-dict":
        d = {str(i): i for i in range(BENCH_ITEMS)}
        fn = lambda: np.array([d.get(x, -1) for x in _next()], dtype=np.int64)  # noqa: E731
    elif impl == "pandas-get_indexer":
        pd = pytest.importorskip("pandas")
        index = pd.Index([str(i) for i in range(BENCH_ITEMS)])
        index.get_indexer(["0"])  # builds the hash table once
        fn = lambda: index.get_indexer(_next())  # noqa: E731
    else:
        index = _ids.PyIdIndex.from_blob(st["data"], st["offsets"])
        fn = lambda: index.lookup(_next())  # noqa: E731
    expected = np.array([int(x) if x.isdigit() else -1 for x in st["pool"][0]], dtype=np.int64)
    st["i"] = 63
    np.testing.assert_array_equal(np.asarray(fn()), expected)
    benchmark.group = f"id lookup K={K} N={BENCH_ITEMS}"
    benchmark.extra_info.update(impl=impl, K=K, N=BENCH_ITEMS)
    benchmark(fn)
