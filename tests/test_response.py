"""Response entries (``rankcore.personalize.response.ranking_entries``): native vs. pure-Python fallback.

The two implementations must agree exactly: the same list of dicts (same key order, the very
same ``str`` objects for the IDs, bit-identical float scores equal to
``float(np.round(np.float64(s), 7))``), and the same exception type and message for the same bad
input. Native-only tests are skipped when the extension is not built. Reference
counts are checked so that the native code neither leaks nor steals references to the IDs.
Out of scope: the surrounding response (``RankingResult.to_response``), tested in test_campaign.py.
"""
import math
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rankcore.core import native
from rankcore.personalize.response import ranking_entries, ranking_entries_py

IMPLS = [pytest.param(ranking_entries_py, id="python")]
if native.HAS_NATIVE:
    native_entries = native.core.ranking_entries
    IMPLS.append(pytest.param(native_entries, id="native"))
needs_native = pytest.mark.skipif(not native.HAS_NATIVE, reason="the extension is not built")


def oracle(item_ids, positions, scores, unknown_ids):
    """The contract, written the obvious way."""
    out = [{"itemId": item_ids[int(p)], "score": float(np.round(np.float64(s), 7))}
           for p, s in zip(positions, scores)]
    return out + [{"itemId": u} for u in unknown_ids]


def same(a, b):
    """Equal entry lists with identical id objects and bit-identical (NaN-aware) scores."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert list(x) == list(y)  # key order
        assert x["itemId"] is y["itemId"]
        if "score" in x:
            assert type(x["score"]) is float and type(y["score"]) is float
            assert (math.isnan(x["score"]) and math.isnan(y["score"])) or x["score"] == y["score"]
            assert math.copysign(1, x["score"]) == math.copysign(1, y["score"])


@pytest.mark.parametrize("impl", IMPLS)
def test_basic(impl):
    ids = ["a", "b", "日本語", ""]
    pos = np.array([2, 0, 3], np.int64)
    scores = np.array([0.6, 0.123456789, 0.0], np.float32)
    got = impl(ids, pos, scores, ["x", "🙂"])
    assert got == [{"itemId": "日本語", "score": 0.6}, {"itemId": "a", "score": 0.1234568},
                   {"itemId": "", "score": 0.0}, {"itemId": "x"}, {"itemId": "🙂"}]
    same(got, oracle(ids, pos, scores, ["x", "🙂"]))
    same(impl(tuple(ids), pos, scores, ("x",)), oracle(ids, pos, scores, ["x"]))
    assert impl([], np.zeros(0, np.int64), np.zeros(0, np.float32), []) == []
    assert impl(ids, np.zeros(0, np.int64), np.zeros(0, np.float32), ["q"]) == [{"itemId": "q"}]


@pytest.mark.parametrize("impl", IMPLS)
def test_rounding_edges(impl):
    """Exact halves (ties to even), values next to them, 0, 1, tiny, NaN and infinities."""
    vals = [0.0, 1.0, -0.0, 0.5, 1e-8, 4.9999999e-8, 5e-8, 1.5e-7, 2.5e-7, 0.99999994, 0.12345675,
            0.33333334, float(np.nextafter(np.float32(1), np.float32(0))), 1.4e-45, np.nan, np.inf, -np.inf]
    scores = np.array(vals, np.float32)
    ids = [f"i{k}" for k in range(len(vals))]
    pos = np.arange(len(vals), dtype=np.int64)
    same(impl(ids, pos, scores, []), oracle(ids, pos, scores, []))


@st.composite
def cases(draw):
    ids = draw(st.lists(st.text(max_size=12), max_size=40))
    n = draw(st.integers(0, 60)) if ids else 0
    pos = draw(hnp.arrays(np.int64, n, elements=st.integers(0, max(len(ids) - 1, 0))))
    scores = draw(hnp.arrays(np.float32, n, elements=st.one_of(
        st.floats(0, 1, width=32), st.sampled_from([0.0, 1.0]), st.floats(width=32, allow_nan=True))))
    unknown = draw(st.lists(st.text(max_size=12), max_size=10))
    return ids, pos, scores, unknown


@given(cases())
def test_matches_oracle(case):
    ids, pos, scores, unknown = case
    want = oracle(ids, pos, scores, unknown)
    same(ranking_entries_py(ids, pos, scores, unknown), want)
    same(ranking_entries(ids, pos, scores, unknown), want)
    if native.HAS_NATIVE:
        same(native_entries(tuple(ids), pos, scores, tuple(unknown)), want)


def _bad_inputs():
    ids = ["a", "b"]
    pos = np.array([1, 0], np.int64)
    sc = np.array([0.5, 0.5], np.float32)
    return [
        ((None, pos, sc, []), TypeError),
        (("ab", pos, sc, []), TypeError),
        ((ids, [1, 0], sc, []), TypeError),
        ((ids, pos.astype(np.int32), sc, []), TypeError),
        ((ids, pos, sc.astype(np.float64), []), TypeError),
        ((ids, np.array([[1, 0]], np.int64), sc, []), ValueError),
        ((ids, np.array([1, 9, 0, 9], np.int64)[::2], sc, []), ValueError),
        ((ids, pos, sc[:1], []), ValueError),
        ((ids, pos, sc, None), TypeError),
        ((ids, pos, sc, {"x"}), TypeError),
        ((["a", 3], pos, sc, []), TypeError),
        ((ids, pos, sc, ["x", b"y"]), TypeError),
        ((ids, np.array([1, 2], np.int64), sc, []), IndexError),
        ((ids, np.array([-1, 0], np.int64), sc, []), IndexError),
        (([], np.array([0], np.int64), sc[:1], []), IndexError),
        ((["a", 3], np.array([5, 0], np.int64), sc, [1]), TypeError),  # type errors come first
    ]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k", range(len(_bad_inputs())))
def test_errors(impl, k):
    args, exc = _bad_inputs()[k]
    with pytest.raises(exc):
        impl(*args)


@needs_native
@pytest.mark.parametrize("k", range(len(_bad_inputs())))
def test_error_parity(k):
    args, exc = _bad_inputs()[k]
    with pytest.raises(exc) as from_native:
        native_entries(*args)
    with pytest.raises(exc) as from_python:
        ranking_entries_py(*args)
    assert str(from_native.value) == str(from_python.value)


@needs_native
def test_reference_counts():
    """Each returned entry holds one new reference to its id; dropping the result releases them all,
    and failed calls (validated before anything is built) change no reference count."""
    a, b, u = "".join(["item-", "a"]), "".join(["item-", "b"]), "".join(["unk-", "1"])
    ids = [a, b]
    pos = np.array([1, 0, 1], np.int64)
    sc = np.array([0.25, 0.5, 0.25], np.float32)

    def counts():
        return [sys.getrefcount(x) for x in (a, b, u, pos, sc)]

    before = counts()
    for _ in range(1000):
        out = native_entries(ids, pos, sc, [u])
    assert counts() == [before[0] + 1, before[1] + 2, before[2] + 1, before[3], before[4]]
    del out
    assert counts() == before
    for _ in range(1000):
        with pytest.raises(IndexError):
            native_entries(ids, np.array([0, 7], np.int64), sc[:2], [u])
    assert counts() == before


def test_dispatch():
    """ranking_entries is the native one whenever the extension has it."""
    assert ranking_entries is (native_entries if native.HAS_NATIVE else ranking_entries_py)
    ids = ["a"]
    assert ranking_entries(ids, np.zeros(1, np.int64), np.ones(1, np.float32), []) == [
        {"itemId": "a", "score": 1.0}]
