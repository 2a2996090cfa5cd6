"""Behaviour of rank/score/rank_batch/score_batch and ItemTable on every backend.

Compared with the float64 oracle in ``oracle.py`` (tolerances are stated there). Out of scope
here: forced SIMD kernels over tail dims (``test_kernels.py``) and random properties
(``test_properties.py``).
"""
import numpy as np
import pytest

import rankcore
from oracle import check_ranking_order, logits64, softmax64


def make_table(rng, n=200, d=24, bias=True):
    emb = rng.standard_normal((n, d)) / np.sqrt(d)
    b = rng.standard_normal(n) * 0.1 if bias else None
    return emb, b, rankcore.ItemTable(emb, bias=b)


# --------------------------------------------------------------------------- ItemTable

def test_item_table_layout(rng):
    emb, b, t = make_table(rng, n=10, d=17)
    assert (t.n_items, t.dim, t.padded_dim) == (10, 17, 32)
    assert t.data.dtype == np.float32 and t.data.flags.c_contiguous
    assert t.data.ctypes.data % 64 == 0
    assert not t.data.flags.writeable
    assert np.all(t.data[:, 17:] == 0)
    np.testing.assert_array_equal(t.embeddings, emb.astype(np.float32))
    np.testing.assert_array_equal(t.bias, b.astype(np.float32))
    assert t.nbytes == 10 * 32 * 4 + 10 * 4
    with pytest.raises(ValueError):
        t.data[0, 0] = 1.0


def test_item_table_large_uses_aligned_mapping(rng):
    emb = np.ones((20000, 64), dtype=np.float32)  # 5 MB: the huge-page path
    t = rankcore.ItemTable(emb)
    assert t.data.ctypes.data % 64 == 0 and t.padded_dim == 64
    assert float(t.data.sum()) == 20000 * 64


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((0, 4)), ValueError),
    (np.zeros((4, 0)), ValueError),
    (np.zeros(4), ValueError),
    (np.array([[1.0, np.nan]]), ValueError),
    (np.array([[1.0, np.inf]]), ValueError),
    (np.array([[1e300, 1.0]]), ValueError),
    (np.array([["a", "b"]]), TypeError),
])
def test_item_table_rejects(bad, exc):
    with pytest.raises(exc):
        rankcore.ItemTable(bad)


def test_item_table_rejects_bad_bias():
    with pytest.raises(ValueError, match="bias"):
        rankcore.ItemTable(np.ones((3, 2)), bias=np.ones(4))
    with pytest.raises(ValueError, match="bias"):
        rankcore.ItemTable(np.ones((3, 2)), bias=[0, np.nan, 0])


def test_item_table_copies_input(rng):
    emb = rng.standard_normal((5, 3)).astype(np.float32)
    t = rankcore.ItemTable(emb)
    emb[:] = 0
    assert np.any(t.embeddings != 0)


def test_from_padded_zero_copy(rng):
    _, _, t = make_table(rng, n=8, d=20)
    t2 = rankcore.ItemTable.from_padded(t.data, 20, bias=t.bias)
    assert np.shares_memory(t2.data, t.data)
    u = rng.standard_normal(20)
    np.testing.assert_array_equal(rankcore.rank(u, t, [1, 2, 3]).scores, rankcore.rank(u, t2, [1, 2, 3]).scores)
    with pytest.raises(ValueError):
        rankcore.ItemTable.from_padded(t.data, 33)
    with pytest.raises(TypeError):
        rankcore.ItemTable.from_padded(t.data.astype(np.float64), 20)


# --------------------------------------------------------------------------- rank / score

def test_rank_matches_oracle(backend, rng):
    emb, b, t = make_table(rng)
    u = rng.standard_normal(24)
    cands = rng.choice(200, size=120, replace=False)
    r = rankcore.rank(u, t, cands, backend=backend)
    ref = softmax64(logits64(u, t.embeddings, t.bias, cands))
    assert len(r) == 120
    np.testing.assert_array_equal(r.items, cands[r.positions])
    np.testing.assert_allclose(r.scores, ref[r.positions], atol=1e-6, rtol=0)
    np.testing.assert_allclose(r.logits, logits64(u, t.embeddings, t.bias, r.items), rtol=1e-5, atol=1e-5)
    assert abs(float(r.scores.sum(dtype=np.float64)) - 1) < 1e-5
    check_ranking_order(r.scores, r.positions)
    assert r.scores.dtype == np.float32 and r.logits.dtype == np.float32
    assert r.positions.dtype == np.int64 and r.items.dtype == np.int64


def test_score_matches_rank(backend, rng):
    _, _, t = make_table(rng)
    u = rng.standard_normal(24)
    cands = rng.integers(0, 200, 60)
    s = rankcore.score(u, t, cands, backend=backend)
    r = rankcore.rank(u, t, cands, backend=backend)
    np.testing.assert_array_equal(s.scores[r.positions], r.scores)
    np.testing.assert_array_equal(s.logits[r.positions], r.logits)
    np.testing.assert_allclose(s.scores, softmax64(logits64(u, t.embeddings, t.bias, cands)), atol=1e-6)


def test_topk_is_head_of_full_ranking(backend, rng):
    _, _, t = make_table(rng)
    u = rng.standard_normal(24)
    cands = rng.integers(0, 200, 100)
    full = rankcore.rank(u, t, cands, backend=backend)
    for k in (0, 1, 5, 99, 100, 1000):
        top = rankcore.rank(u, t, cands, k=k, backend=backend)
        n = min(k, 100)
        assert len(top) == n
        np.testing.assert_array_equal(top.positions, full.positions[:n])
        np.testing.assert_array_equal(top.scores, full.scores[:n])


def test_ties_keep_input_order(backend):
    t = rankcore.ItemTable(np.ones((6, 3)))
    r = rankcore.rank(np.ones(3), t, [5, 3, 1, 0], backend=backend)
    np.testing.assert_array_equal(r.positions, [0, 1, 2, 3])
    np.testing.assert_array_equal(r.scores, np.full(4, 0.25, dtype=np.float32))


def test_k1_and_k0(backend, rng):
    _, _, t = make_table(rng)
    u = rng.standard_normal(24)
    r = rankcore.rank(u, t, [7], backend=backend)
    assert r.scores.tolist() == [1.0] and r.items.tolist() == [7]
    e = rankcore.rank(u, t, [], backend=backend)
    assert len(e) == 0 and e.scores.dtype == np.float32
    assert len(rankcore.score(u, t, np.array([], dtype=np.int32), backend=backend)) == 0


def test_extreme_values_stay_finite(backend):
    t = rankcore.ItemTable(np.array([[1e30, 1e30], [-1e30, 1e30], [1e30, -1e30], [0.0, 0.0]]))
    r = rankcore.rank(np.array([1e30, 1e30]), t, [0, 1, 2, 3], backend=backend)
    assert np.all(np.isfinite(r.scores))
    assert r.items[0] == 0 and r.scores[0] == 1.0
    assert abs(float(r.scores.sum()) - 1) < 1e-6
    t2 = rankcore.ItemTable(np.full((3, 4), 1e30))
    r2 = rankcore.rank(np.full(4, 1e30), t2, [0, 1, 2], backend=backend)
    np.testing.assert_allclose(r2.scores, [1 / 3] * 3, atol=1e-7)
    # large but not overflowing: one winner takes all
    r3 = rankcore.rank(np.array([1e30, 0.0]), rankcore.ItemTable([[1.0, 0], [2.0, 0]]), [0, 1], backend=backend)
    assert r3.items.tolist() == [1, 0] and r3.scores.tolist() == [1.0, 0.0]


def test_accepts_various_input_types(backend, rng):
    emb, b, t = make_table(rng)
    u64 = rng.standard_normal(24)
    cands = rng.integers(0, 200, 30)
    ref = rankcore.rank(u64.astype(np.float32), t, cands.astype(np.int64), backend=backend)
    strided_u = np.repeat(u64, 2)[::2]
    ro = cands.astype(np.int32)
    ro.flags.writeable = False
    for u, c in [(u64, ro), (strided_u, cands.tolist()), (list(u64), np.repeat(cands, 2)[::2]),
                 (u64.astype(np.float16).astype(np.float64), cands.astype(np.uint16))]:
        r = rankcore.rank(u, t, c, backend=backend)
        np.testing.assert_allclose(r.scores, ref.scores, atol=2e-3)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("cands", [[0, 200], [-1], [3, -5], [2**40]])
def test_out_of_range_candidates_raise_index_error(backend, rng, cands):
    _, _, t = make_table(rng)
    with pytest.raises(IndexError, match="out of range"):
        rankcore.rank(rng.standard_normal(24), t, cands, backend=backend)
    with pytest.raises(IndexError, match="out of range"):
        rankcore.score(rng.standard_normal(24), t, cands, backend=backend)


def test_index_error_names_candidate(backend, rng):
    _, _, t = make_table(rng)
    with pytest.raises(IndexError, match=r"candidate 999 out of range for an item table of 200 rows \(request 0, position 2\)"):
        rankcore.rank(rng.standard_normal(24), t, [1, 2, 999], backend=backend)


@pytest.mark.parametrize("user, exc", [
    (np.full(24, np.nan), ValueError),
    (np.r_[np.ones(23), np.inf], ValueError),
    (np.ones(23), ValueError),
    (np.ones((2, 24)), ValueError),
    (np.array(["x"] * 24), TypeError),
    (np.full(24, 1e300), ValueError),
])
def test_bad_user_raises(backend, rng, user, exc):
    _, _, t = make_table(rng)
    with pytest.raises(exc):
        rankcore.rank(user, t, [1, 2], backend=backend)


@pytest.mark.parametrize("cands, exc", [
    ([1.5, 2.0], TypeError),
    (np.array([1.0, 2.0]), TypeError),
    (["1", "2"], TypeError),
    (np.array([True, False]), TypeError),
    (np.ones((2, 2), dtype=np.int64), ValueError),
])
def test_bad_candidates_raise(backend, rng, cands, exc):
    _, _, t = make_table(rng)
    with pytest.raises(exc):
        rankcore.rank(rng.standard_normal(24), t, cands, backend=backend)


def test_bad_k_and_table(backend, rng):
    _, _, t = make_table(rng)
    u = rng.standard_normal(24)
    with pytest.raises(ValueError):
        rankcore.rank(u, t, [1], k=-1, backend=backend)
    with pytest.raises(TypeError):
        rankcore.rank(u, t, [1], k=1.5, backend=backend)
    with pytest.raises(TypeError):
        rankcore.rank(u, np.ones((3, 24)), [1], backend=backend)


def test_parity_of_errors_across_backends(rng):
    """The same bad input raises the same exception type and message on every backend."""
    _, _, t = make_table(rng)
    u = rng.standard_normal(24)
    cases = [
        lambda b: rankcore.rank(u, t, [0, 400], backend=b),
        lambda b: rankcore.rank_batch(np.stack([u, u]), t, [[0, -1], [1, -2]], backend=b),
        lambda b: rankcore.rank_batch(np.stack([u, u]), t, [0, 1, 2], [0, 2, 1], backend=b),
        lambda b: rankcore.rank_batch(np.stack([u, u]), t, [0, 1, 2], [0, 1, 4], backend=b),
        lambda b: rankcore.score_batch(np.stack([u, u]), t, [0, 1, 2], [0, 1], backend=b),
        lambda b: rankcore.rank(np.full(24, np.nan), t, [0], backend=b),
    ]
    for case in cases:
        seen = set()
        for b in rankcore.available_backends():
            with pytest.raises((ValueError, IndexError, TypeError)) as info:
                case(b)
            seen.add((info.type, str(info.value) if info.type is IndexError else info.type.__name__))
        assert len(seen) == 1, seen


def test_corrupt_table_never_gives_nan(backend, rng):
    from rankcore.core import aligned_zeros as _aligned_zeros

    data = _aligned_zeros(4, 16)
    data[2, 3] = np.nan  # as a corrupted memory-mapped file could hold
    t = rankcore.ItemTable.from_padded(data, 16)
    with pytest.raises(ValueError, match="non-finite logit for item row 2"):
        rankcore.rank(np.ones(16), t, [0, 1, 2], backend=backend)
    assert rankcore.rank(np.ones(16), t, [0, 1], backend=backend).scores.tolist() == [0.5, 0.5]


# --------------------------------------------------------------------------- batches

def test_rank_batch_csr_equals_rows(backend, rng):
    _, _, t = make_table(rng)
    users = rng.standard_normal((5, 24))
    lens = [3, 0, 50, 1, 17]
    offsets = np.r_[0, np.cumsum(lens)]
    cands = rng.integers(0, 200, offsets[-1])
    res = rankcore.rank_batch(users, t, cands, offsets, backend=backend, threads=2)
    assert len(res) == 5
    np.testing.assert_array_equal(res.offsets, offsets)
    for i in range(5):
        one = rankcore.rank(users[i], t, cands[offsets[i]:offsets[i + 1]], backend=backend)
        np.testing.assert_array_equal(res[i].positions, one.positions)
        np.testing.assert_array_equal(res[i].scores, one.scores)
        np.testing.assert_array_equal(res[i].logits, one.logits)
    assert [len(r) for r in res] == lens


def test_rank_batch_padded(backend, rng):
    _, _, t = make_table(rng)
    users = rng.standard_normal((3, 24))
    cands = np.array([[5, 6, -1, 7], [-1, -1, -1, -1], [9, -1, 8, -1]])
    res = rankcore.rank_batch(users, t, cands, backend=backend, k=2)
    assert [len(r) for r in res] == [2, 0, 2]
    full = rankcore.rank(users[2], t, [9, 8], backend=backend)
    np.testing.assert_array_equal(res[2].items, full.items)
    np.testing.assert_array_equal(res[2].positions, np.where(full.items == 9, 0, 2))
    s = rankcore.score_batch(users, t, cands, backend=backend)
    assert s.scores.shape == (3, 4)
    assert s.scores[0, 2] == 0 and s.logits[0, 2] == -np.inf
    np.testing.assert_allclose(s.scores.sum(1), [1, 0, 1], atol=1e-6)
    np.testing.assert_array_equal(s[1].scores, np.zeros(4, dtype=np.float32))


def test_rank_batch_validates(backend, rng):
    _, _, t = make_table(rng)
    users = rng.standard_normal((2, 24))
    with pytest.raises(ValueError):
        rankcore.rank_batch(users, t, [1, 2, 3], backend=backend)  # missing offsets
    with pytest.raises(ValueError):
        rankcore.rank_batch(users, t, [[1, 2]], backend=backend)  # rows != users
    with pytest.raises(ValueError):
        rankcore.rank_batch(users, t, [[1], [2]], [0, 1, 2], backend=backend)
    with pytest.raises(ValueError):
        rankcore.rank_batch(users, t, [1, 2], [0, 1, 2], threads=0, backend=backend)
    with pytest.raises(TypeError):
        rankcore.rank_batch(users, t, [1, 2], [0.0, 1.0, 2.0], backend=backend)
    with pytest.raises(ValueError):
        rankcore.rank_batch(users[0], t, [1, 2], [0, 1, 2], backend=backend)
    res = rankcore.rank_batch(users, t, [1, 2], np.array([0, 1, 2]), backend=backend)
    with pytest.raises(IndexError):
        res[2]
    assert res[-1].items.tolist() == [2]


def test_empty_batch(backend, rng):
    _, _, t = make_table(rng)
    res = rankcore.rank_batch(np.zeros((0, 24)), t, np.zeros(0, dtype=np.int64), [0], backend=backend)
    assert len(res) == 0 and res.items.shape == (0,)


# --------------------------------------------------------------------------- backends

def test_backend_selection(monkeypatch):
    assert rankcore.available_backends()[-1] == "numpy"
    with pytest.raises(ValueError, match="unknown backend"):
        rankcore.rank(np.ones(2), rankcore.ItemTable(np.ones((2, 2))), [0], backend="gpu")
    monkeypatch.setenv("RANKCORE_BACKEND", "numpy")
    from rankcore.core import backend as _backend
    assert _backend.resolve_name() == "numpy"
    monkeypatch.setenv("RANKCORE_BACKEND", "nope")
    with pytest.raises(ValueError):
        rankcore.rank(np.ones(2), rankcore.ItemTable(np.ones((2, 2))), [0])
    monkeypatch.delenv("RANKCORE_BACKEND")
    assert _backend.resolve_name() == rankcore.available_backends()[0]
    if not rankcore.HAS_CPP:
        with pytest.raises(ImportError):
            rankcore.rank(np.ones(2), rankcore.ItemTable(np.ones((2, 2))), [0], backend="cpp")


def test_build_info():
    info = rankcore.build_info()
    assert info["version"] == rankcore.__version__
    assert info["backends"] == rankcore.available_backends()
    if rankcore.HAS_CPP:
        assert info["simd_kernel"] in ("avx2", "serial")


# --------------------------------------------------------------------------- the native single-call path

_core = rankcore.core.native.core if rankcore.HAS_CPP else None
needs_cpp = pytest.mark.skipif(_core is None, reason="the C++ extension is not built")


@needs_cpp
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k", [None, 0, 3, 40])
def test_fast_path_equals_general_path(rng, bias, k):
    """Exact inputs take ``rank_one``; the same values in other dtypes take the general path."""
    emb, b, t = make_table(rng, n=300, d=37, bias=bias)
    user = rng.standard_normal(37).astype(np.float32)
    cands = rng.integers(0, 300, 40)
    fast = rankcore.rank(user, t, cands, k=k)
    assert _core.rank_one(user, t._data, t._bias, t._dim, cands, k, rankcore.Ranking) is not None
    converted = rankcore.rank(user.astype(np.float64), t, cands.astype(np.int32), k=k, backend="cpp")
    binding = rankcore.Ranking(*_core.rank(user[None, :], t._data, t._bias, t._dim, cands, None, False,
                                           -1 if k is None else k, 1)[:4])
    for general in (converted, binding):
        for name in ("positions", "items", "scores", "logits"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(general, name))
            assert getattr(fast, name).dtype == getattr(general, name).dtype
    ref = softmax64(logits64(user, emb.astype(np.float32), None if b is None else b.astype(np.float32), cands))
    np.testing.assert_allclose(fast.scores, ref[fast.positions], atol=1e-6, rtol=0)


@needs_cpp
@pytest.mark.parametrize("bias", [True, False])
def test_score_fast_path_equals_general_path(rng, bias):
    _, _, t = make_table(rng, n=300, d=37, bias=bias)
    user = rng.standard_normal(37).astype(np.float32)
    cands = rng.integers(0, 300, 40)
    assert _core.score_one(user, t._data, t._bias, t._dim, cands, rankcore.Scores) is not None
    fast = rankcore.score(user, t, cands)
    converted = rankcore.score(user.astype(np.float64), t, cands.astype(np.int32), backend="cpp")
    binding = rankcore.Scores(*_core.score(user[None, :], t._data, t._bias, t._dim, cands, None, False, 1))
    for general in (converted, binding):
        np.testing.assert_array_equal(fast.scores, general.scores)
        np.testing.assert_array_equal(fast.logits, general.logits)
    assert fast.scores.dtype == np.float32 and len(fast) == 40
    assert _core.score_one(user.astype(np.float64), t._data, t._bias, t._dim, cands, rankcore.Scores) is None
    assert _core.score_one(user, t._data, t._bias, t._dim, cands.astype(np.int32), rankcore.Scores) is None
    with pytest.raises(IndexError, match="candidate 300 out of range"):
        rankcore.score(user, t, np.array([1, 300]))
    bad = user.copy()
    bad[0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        rankcore.score(bad, t, cands)
    with pytest.raises(TypeError):
        _core.score_one(user, t._data)


@needs_cpp
def test_fast_path_declines_inexact_inputs(rng):
    """``rank_one`` returns None (general path) for anything but the exact form, and never guesses."""
    _, _, t = make_table(rng, n=50, d=8, bias=True)
    u = rng.standard_normal(8).astype(np.float32)
    c = rng.integers(0, 50, 5)
    R = rankcore.Ranking
    args = [u, t._data, t._bias, t._dim, c, None, R]
    assert isinstance(_core.rank_one(*args), R)
    swaps = {
        0: [u.astype(np.float64), u[::-1][::-1].copy().reshape(1, 8), np.repeat(u, 2)[::2], list(u),
            u[:7], u.astype(">f4")],
        1: [t._data.astype(np.float64), t._data[:, :8][:, ::-1]],
        2: [t._bias.astype(np.float64), t._bias[:10], 0.0],
        3: [8.0, 0, 17, -1],
        4: [c.astype(np.int32), np.repeat(c, 2)[::2], list(c), c.reshape(1, 5)],
        5: [-1, 2.0, True, "3"],
    }
    for i, values in swaps.items():
        for v in values:
            a = list(args)
            a[i] = v
            assert _core.rank_one(*a) is None, (i, v)
    with pytest.raises(TypeError):
        _core.rank_one(u, t._data)
    # Through the public function every one of these still works or raises the documented error.
    assert rankcore.rank(list(u), t, list(c)).items.tolist() == _core.rank_one(*args).items.tolist()


@needs_cpp
def test_fast_path_errors(rng):
    _, _, t = make_table(rng, n=50, d=8)
    u = rng.standard_normal(8).astype(np.float32)
    with pytest.raises(IndexError, match="candidate 50 out of range .*position 2"):
        rankcore.rank(u, t, np.array([1, 2, 50]))
    with pytest.raises(IndexError, match="candidate -1 out of range"):
        rankcore.rank(u, t, np.array([-1]))
    bad = u.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        rankcore.rank(bad, t, np.array([1, 2]))
    r = rankcore.rank(u, t, np.zeros(0, dtype=np.int64))
    assert len(r) == 0 and r.scores.dtype == np.float32 and r.items.dtype == np.int64


@needs_cpp
def test_fast_path_is_thread_safe(rng):
    """Per-thread workspaces: concurrent single calls give the same answers as sequential ones."""
    import concurrent.futures

    _, _, t = make_table(rng, n=5000, d=32)
    users = rng.standard_normal((64, 32)).astype(np.float32)
    lists = [rng.integers(0, 5000, int(n)) for n in rng.integers(1, 700, 64)]
    want = [rankcore.rank(u, t, c) for u, c in zip(users, lists)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda i: rankcore.rank(users[i], t, lists[i]), range(64)))
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g.items, w.items)
                np.testing.assert_array_equal(g.scores, w.scores)


@needs_cpp
def test_candidates_changed_during_call_never_read_out_of_bounds(rng):
    """Another thread rewrites the candidate array while the native call runs without the GIL:
    each call returns a ranking of in-range rows or raises IndexError, never reads outside the table."""
    import threading

    _, _, t = make_table(rng, n=1000, d=16)
    u = rng.standard_normal(16).astype(np.float32)
    c = rng.integers(0, 1000, 4000)
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            c[::7] = 10**12
            c[::7] = 5

    th = threading.Thread(target=flip)
    th.start()
    outcomes = set()
    try:
        for _ in range(300):
            try:
                r = rankcore.rank(u, t, c)
                assert r.items.min() >= 0 and r.items.max() < 1000
                outcomes.add("ranked")
            except IndexError:
                outcomes.add("IndexError")
    finally:
        stop.set()
        th.join()
    assert outcomes <= {"ranked", "IndexError"}


@pytest.mark.parametrize("K", [20, 33, 700, 4096, 4097, 9000])
@pytest.mark.parametrize("shape", ["normal", "skewed", "ties"])
def test_every_sort_path(backend, K, shape):
    """Every ordering path of every backend (insertion, buckets, big buckets, top-k selection,
    LSD radix) gives the stable descending order of its own scores."""
    rng = np.random.default_rng(K)
    emb = rng.standard_normal((K, 4)).astype(np.float32)
    if shape == "skewed":  # one dominant logit, the rest packed in a narrow band
        emb[:, 0] = 1e-3 * emb[:, 0]
        emb[7, 0] = 60.0
    elif shape == "ties":
        emb = np.repeat(emb[:5], K // 5 + 1, axis=0)[:K].copy()
    t = rankcore.ItemTable(emb)
    user = np.array([1.0, 0.5, -0.25, 0.125], dtype=np.float32)
    cands = rng.permutation(K)
    full = rankcore.score(user, t, cands, backend=backend).scores
    expected = np.argsort(-full, kind="stable")
    for k in (None, 1, 3, 25, 32, 33, K // 2):
        if k is not None and k > K:
            continue
        r = rankcore.rank(user, t, cands, k=k, backend=backend)
        np.testing.assert_array_equal(r.positions, expected[: len(r)])
        np.testing.assert_array_equal(r.scores, full[r.positions])
    # worst case of the one-pass selection: candidates worst first, each one a new best
    worst_first = cands[np.argsort(full, kind="stable")]
    rev = rankcore.score(user, t, worst_first, backend=backend).scores
    for k in (3, 32):
        r = rankcore.rank(user, t, worst_first, k=k, backend=backend)
        np.testing.assert_array_equal(r.positions, np.argsort(-rev, kind="stable")[:k])
