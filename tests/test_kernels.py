"""Tests of the native kernels in ``rankcore._core`` against a NumPy float64 oracle.

Every test that computes runs once per kernel this machine supports (``serial`` always,
``avx2`` on x86-64 CPUs with AVX2+FMA), forced through ``_core.set_kernel`` by a fixture
that restores the previous kernel afterwards.

Tolerance policy
----------------
- The oracle computes logits in float64 from the same float32 inputs; the kernels
  accumulate in float32 (any order), so logits are compared with
  ``rtol=1e-5`` plus ``atol=1e-5 * sum(|e_i * u_i|)``.
- Inputs are scaled so logits are O(1); then each score must be within ``1e-6``
  absolute of the oracle's softmax, and each request's scores must sum to 1 within ``1e-5``.
- Order is checked exactly against a stable descending argsort of the kernel's *own*
  scores (near-ties between kernel and oracle may legitimately swap), and exact ties
  (repeated candidates) must keep input order.
- Out of scope: bit-exact agreement between kernels, and NaN inputs other than the
  documented error.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

_core = pytest.importorskip("rankcore._core")

KERNELS = _core.available_kernels()
# The AVX2 gather has one instantiation per whole 8-float vector up to dim 135 and a generic loop above.
DIMS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 135, 136, 200]
KS = [0, 1, 2, 17, 500]


@pytest.fixture(params=KERNELS)
def kernel(request):
    previous = _core.active_kernel()
    _core.set_kernel(request.param)
    try:
        yield request.param
    finally:
        _core.set_kernel(previous)


def make_problem(rng, n_rows, dim, ld=None, bias=True):
    ld = dim if ld is None else ld
    table = np.full((n_rows, ld), np.nan, dtype=np.float32)  # padding columns must never be read
    table[:, :dim] = rng.standard_normal((n_rows, dim), dtype=np.float32)
    user = (rng.standard_normal(dim) / np.sqrt(dim)).astype(np.float32)
    b = (0.1 * rng.standard_normal(n_rows)).astype(np.float32) if bias else None
    return table, user, b


def oracle(table, user, bias, dim, cands):
    """float64 logits and softmax of one request's valid candidates."""
    rows = table[cands, :dim].astype(np.float64)
    logits = rows @ user.astype(np.float64)
    if bias is not None:
        logits = logits + bias[cands].astype(np.float64)
    if len(cands) == 0:
        return logits, logits, np.zeros(0)
    p = np.exp(logits - logits.max())
    mag = np.abs(rows * user.astype(np.float64)).sum(axis=1)
    return logits, p / p.sum(), mag


def check_request(table, user, bias, dim, cands, scores, logits):
    ref_l, ref_s, mag = oracle(table, user, bias, dim, cands)
    np.testing.assert_allclose(logits, ref_l, rtol=1e-5, atol=1e-5 * (mag.max() if len(mag) else 0) + 1e-6)
    np.testing.assert_allclose(scores, ref_s, rtol=0, atol=1e-6)
    if len(cands):
        assert abs(float(np.sum(scores, dtype=np.float64)) - 1.0) <= 1e-5
    assert not np.isnan(scores).any()


# ---------------------------------------------------------------------------------------------
# score / rank correctness


@pytest.mark.parametrize("dim", DIMS)
def test_score_matches_oracle(kernel, dim):
    rng = np.random.default_rng(dim)
    table, user, bias = make_problem(rng, 300, dim)
    cands = rng.integers(0, 300, 41)
    scores, logits = _core.score(user[None, :], table, bias, dim, cands, None, False, 1)
    assert scores.dtype == np.float32 and logits.dtype == np.float32
    assert scores.shape == logits.shape == (41,)
    check_request(table, user, bias, dim, cands, scores, logits)


@pytest.mark.parametrize("dim", DIMS)
def test_rank_matches_oracle_padded_ld(kernel, dim):
    """Table rows padded to a multiple of 16 floats (NaN in the padding), like ItemTable."""
    rng = np.random.default_rng(100 + dim)
    ld = (dim + 15) // 16 * 16 + 16
    table, user, bias = make_problem(rng, 500, dim, ld=ld)
    cands = rng.integers(0, 500, 67)
    pos, items, scores, logits, offs = _core.rank(user[None, :], table, bias, dim, cands, None, False, -1, 1)
    assert list(offs) == [0, 67]
    np.testing.assert_array_equal(items, cands[pos])
    np.testing.assert_array_equal(np.sort(pos), np.arange(67))
    np.testing.assert_array_equal(pos, pos[np.argsort(-scores, kind="stable")])
    order = np.argsort(pos)
    check_request(table, user, bias, dim, cands, scores[order], logits[order])


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("k", [-1, 0, 1, 5, 100])
def test_rank_sizes_and_topk(kernel, K, k):
    rng = np.random.default_rng(K * 7 + k + 1)
    table, user, bias = make_problem(rng, 2000, 64)
    cands = rng.integers(0, 2000, K)
    pos, items, scores, logits, offs = _core.rank(user[None, :], table, bias, 64, cands, None, False, k, 1)
    n_out = K if k < 0 else min(k, K)
    assert list(offs) == [0, n_out]
    assert pos.dtype == items.dtype == offs.dtype == np.int64
    assert len(pos) == len(items) == len(scores) == len(logits) == n_out
    full_s, full_l = _core.score(user[None, :], table, bias, 64, cands, None, False, 1)
    check_request(table, user, bias, 64, cands, full_s, full_l)
    expected = np.argsort(-full_s, kind="stable")[:n_out]
    np.testing.assert_array_equal(pos, expected)
    np.testing.assert_array_equal(items, cands[expected])
    np.testing.assert_array_equal(scores, full_s[expected])
    np.testing.assert_array_equal(logits, full_l[expected])
    if K == 1 and n_out == 1:
        assert scores[0] == 1.0


def test_ties_keep_input_order(kernel):
    rng = np.random.default_rng(3)
    table, user, bias = make_problem(rng, 10, 16)
    cands = np.array([4, 2, 4, 4, 2, 9, 4] * 20, dtype=np.int64)
    for k in (-1, 3, 50):
        pos, items, scores, _, _ = _core.rank(user[None, :], table, bias, 16, cands, None, False, k, 1)
        # Among equal items (equal scores) positions must ascend.
        for item in (2, 4, 9):
            p = pos[items == item]
            assert np.all(np.diff(p) > 0)
        np.testing.assert_array_equal(np.lexsort((pos, -scores.astype(np.float64))), np.arange(len(pos)))


def test_padding(kernel):
    rng = np.random.default_rng(4)
    table, user, bias = make_problem(rng, 50, 9)
    cands = np.array([3, -1, 7, -1, -1, 3, 12], dtype=np.int64)
    valid = cands >= 0
    scores, logits = _core.score(user[None, :], table, bias, 9, cands, None, True, 1)
    assert np.all(scores[~valid] == 0) and np.all(logits[~valid] == -np.inf)
    check_request(table, user, bias, 9, cands[valid], scores[valid], logits[valid])
    pos, items, s, _, offs = _core.rank(user[None, :], table, bias, 9, cands, None, True, -1, 1)
    assert list(offs) == [0, 4]
    assert set(pos) == {0, 2, 5, 6}
    np.testing.assert_array_equal(items, cands[pos])
    np.testing.assert_array_equal(s, scores[pos])


def test_all_padding_and_empty(kernel):
    rng = np.random.default_rng(5)
    table, user, bias = make_problem(rng, 5, 4)
    cands = np.array([-1, -1], dtype=np.int64)
    pos, items, s, l, offs = _core.rank(user[None, :], table, bias, 4, cands, None, True, -1, 1)
    assert len(pos) == len(items) == len(s) == len(l) == 0 and list(offs) == [0, 0]
    scores, logits = _core.score(user[None, :], table, bias, 4, cands, None, True, 1)
    assert list(scores) == [0, 0] and list(logits) == [-np.inf, -np.inf]
    empty_table = np.zeros((0, 4), dtype=np.float32)
    scores, logits = _core.score(user[None, :], empty_table, None, 4, np.zeros(0, np.int64), None, False, 1)
    assert len(scores) == 0


@pytest.mark.parametrize("threads", [0, 1, 2, 3])
def test_batch_equals_rows(kernel, threads):
    rng = np.random.default_rng(6)
    dim = 33
    table, _, bias = make_problem(rng, 1000, dim)
    sizes = [0, 1, 500, 17, 2, 300, 0, 64] * 4
    B = len(sizes)
    users = (rng.standard_normal((B, dim)) / np.sqrt(dim)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cands = rng.integers(0, 1000, offsets[-1])
    cands[rng.random(len(cands)) < 0.1] = -1
    scores, logits = _core.score(users, table, bias, dim, cands, offsets, True, threads)
    for k in (-1, 5):
        pos, items, s, l, offs = _core.rank(users, table, bias, dim, cands, offsets, True, k, threads)
        for b in range(B):
            c = cands[offsets[b] : offsets[b + 1]]
            one = _core.rank(users[b : b + 1], table, bias, dim, c, None, True, k, 1)
            sl = slice(offs[b], offs[b + 1])
            for got, want in zip((pos[sl], items[sl], s[sl], l[sl]), one[:4]):
                np.testing.assert_array_equal(got, want)
    for b in range(B):
        c = cands[offsets[b] : offsets[b + 1]]
        one_s, one_l = _core.score(users[b : b + 1], table, bias, dim, c, None, True, 1)
        np.testing.assert_array_equal(scores[offsets[b] : offsets[b + 1]], one_s)
        np.testing.assert_array_equal(logits[offsets[b] : offsets[b + 1]], one_l)
        v = c >= 0
        check_request(table, users[b], bias, dim, c[v], one_s[v], one_l[v])


def test_unaligned_table_and_users(kernel):
    """Float-aligned but not 32/64-byte aligned buffers must work (unaligned loads)."""
    rng = np.random.default_rng(7)
    dim = 19
    buf = np.zeros(1 + 200 * dim, dtype=np.float32)
    table = buf[1:].reshape(200, dim)
    table[:] = rng.standard_normal((200, dim))
    ubuf = np.zeros(1 + dim, dtype=np.float32)
    user = ubuf[1:]
    user[:] = rng.standard_normal(dim) / np.sqrt(dim)
    cands = rng.integers(0, 200, 23)
    scores, logits = _core.score(user[None, :], table, None, dim, cands, None, False, 1)
    check_request(table, user, None, dim, cands, scores, logits)


def test_large_logit_gaps(kernel):
    """exp underflows to 0 for far-away logits; scores stay finite and sum to 1."""
    dim = 8
    table = np.zeros((4, dim), dtype=np.float32)
    table[:, 0] = [0.0, 50.0, 100.0, 200.0]
    user = np.zeros(dim, dtype=np.float32)
    user[0] = 1.0
    cands = np.array([0, 1, 2, 3, 2], dtype=np.int64)
    scores, logits = _core.score(user[None, :], table, None, dim, cands, None, False, 1)
    check_request(table, user, None, dim, cands, scores, logits)
    assert scores[3] == pytest.approx(1.0, abs=1e-6)


def test_overflow_uses_double(kernel):
    """float32 logits overflow to inf: recomputed in double, scores finite, logits +-inf."""
    dim = 4
    table = np.full((3, dim), 1e30, dtype=np.float32)
    table[1] *= -1
    table[2, :] = 1e-3
    user = np.full(dim, 1e30, dtype=np.float32)
    cands = np.array([0, 1, 2, 0], dtype=np.int64)
    scores, logits = _core.score(user[None, :], table, None, dim, cands, None, False, 1)
    assert not np.isnan(scores).any()
    np.testing.assert_allclose(scores, [0.5, 0.0, 0.0, 0.5], atol=1e-6)
    assert logits[0] == np.inf and logits[1] == -np.inf
    ref = float(np.float32(1e-3 * 1e30 * 4.0))
    assert logits[2] == pytest.approx(ref, rel=1e-6)
    pos, items, s, l, _ = _core.rank(user[None, :], table, None, dim, cands, None, False, -1, 1)
    assert list(pos) == [0, 3, 1, 2]  # both underflow to score 0: tie keeps input order


def test_overflow_softmax_in_double(kernel):
    """Logits representable in double but whose float32 products overflow."""
    dim = 2
    table = np.array([[3e20, 0.0], [3e20, 1.0]], dtype=np.float32)
    user = np.array([3e20, 0.5], dtype=np.float32)
    cands = np.array([0, 1], dtype=np.int64)
    scores, logits = _core.score(user[None, :], table, None, dim, cands, None, False, 1)
    l = table.astype(np.float64) @ user.astype(np.float64)
    p = np.exp(l - l.max())
    np.testing.assert_allclose(scores, p / p.sum(), atol=1e-6)


@pytest.mark.parametrize("where", ["table", "bias", "user"])
def test_nan_input_raises(kernel, where):
    rng = np.random.default_rng(8)
    table, user, bias = make_problem(rng, 20, 5)
    if where == "table":
        table[13, 2] = np.nan
    elif where == "bias":
        bias[13] = np.inf
    else:
        user[1] = np.nan
    cands = np.array([1, 13, 4], dtype=np.int64)
    if where == "user":  # checked up front, before any row is read
        msg = "user vector 0 contains NaN or inf (or values beyond float32 range)"
    else:
        msg = ("non-finite logit for item row 13 (request 0): "
               "the item table, bias or user vector contains NaN or inf")
    with pytest.raises(ValueError) as e:
        _core.score(user[None, :], table, bias, 5, cands, None, False, 1)
    assert str(e.value) == msg
    with pytest.raises(ValueError):
        _core.rank(user[None, :], table, bias, 5, cands, None, False, 2, 1)


def test_worker_error_is_rethrown(kernel):
    rng = np.random.default_rng(9)
    dim, B, K = 16, 64, 200
    table, _, _ = make_problem(rng, 1000, dim)
    table[777] = np.nan
    users = rng.standard_normal((B, dim)).astype(np.float32)
    offsets = (np.arange(B + 1) * K).astype(np.int64)
    cands = rng.integers(0, 1000, B * K)
    cands[cands == 777] = 0
    cands[40 * K + 3] = 777
    with pytest.raises(ValueError, match=r"item row 777 \(request 40\)"):
        _core.rank(users, table, None, dim, cands, offsets, False, 10, 2)


# ---------------------------------------------------------------------------------------------
# errors


def _good():
    rng = np.random.default_rng(10)
    table, user, bias = make_problem(rng, 10, 4)
    return dict(
        users=user[None, :],
        table=table,
        bias=bias,
        dim=4,
        candidates=np.array([1, 2, 3], dtype=np.int64),
        offsets=None,
        padded=False,
    )


BAD_INPUTS = [
    ("users", lambda g: g["users"].astype(np.float64), TypeError, "users must be a C-contiguous float32"),
    ("users", lambda g: g["users"].tolist(), TypeError, "np.ascontiguousarray"),
    ("users", lambda g: g["users"][0], ValueError, "users must be 2-D"),
    ("users", lambda g: np.zeros((1, 8), np.float32)[:, ::2], ValueError, "users must be a C-contiguous"),
    ("table", lambda g: g["table"].astype(np.float64), TypeError, "table must be"),
    ("table", lambda g: np.asfortranarray(g["table"]), ValueError, "table must be a C-contiguous"),
    ("table", lambda g: g["table"][:, :3].copy(), ValueError, "fewer than dim=4"),
    ("table", lambda g: g["table"].astype(">f4"), TypeError, "table must be"),
    ("bias", lambda g: g["bias"][:5].copy(), ValueError, "bias has 5 entries"),
    ("bias", lambda g: g["bias"].astype(np.float64), TypeError, "bias must be"),
    ("candidates", lambda g: g["candidates"].astype(np.int32), TypeError, "candidates must be"),
    ("candidates", lambda g: np.array([1, 2, 3, 4], np.int64)[::2], ValueError, "candidates must be a C-contiguous"),
    ("candidates", lambda g: g["candidates"][None, :], ValueError, "candidates must be 1-D"),
    ("offsets", lambda g: np.array([0, 3], np.int32), TypeError, "offsets must be"),
    ("offsets", lambda g: np.array([0, 1, 3], np.int64), ValueError, "offsets must have"),
    ("offsets", lambda g: np.array([1, 3], np.int64), ValueError, "offsets[0] must be 0"),
    ("offsets", lambda g: np.array([0, 2], np.int64), ValueError, "offsets[-1] must equal"),
    ("dim", lambda g: 0, ValueError, "dim must be >= 1"),
    ("dim", lambda g: 5, ValueError, "users has 4 columns"),
]


@pytest.mark.parametrize("fn", ["score", "rank"])
@pytest.mark.parametrize("name,make,exc,match", BAD_INPUTS)
def test_bad_inputs(fn, name, make, exc, match):
    g = _good()
    g[name] = make(g)
    args = [g["users"], g["table"], g["bias"], g["dim"], g["candidates"], g["offsets"], g["padded"]]
    call = (lambda: _core.score(*args, 1)) if fn == "score" else (lambda: _core.rank(*args, -1, 1))
    with pytest.raises(exc) as e:
        call()
    assert match in str(e.value)


def test_decreasing_offsets():
    g = _good()
    users = np.repeat(g["users"], 2, axis=0)
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.score(users, g["table"], None, 4, g["candidates"], np.array([0, 3, 2], np.int64), False, 1)


def test_offsets_none_needs_one_request():
    g = _good()
    users = np.repeat(g["users"], 2, axis=0)
    with pytest.raises(ValueError, match="offsets=None means a single request"):
        _core.score(users, g["table"], None, 4, g["candidates"], None, False, 1)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("bad", [10, 11, -2, 2**62, -(2**63)])
def test_candidate_out_of_range(padded, bad):
    g = _good()
    users = np.repeat(g["users"], 2, axis=0)
    cands = np.array([1, 2, 3, 4, bad, 5], dtype=np.int64)
    offsets = np.array([0, 3, 6], np.int64)
    msg = f"candidate {bad} out of range for an item table of 10 rows (request 1, position 1)"
    for call in (
        lambda: _core.score(users, g["table"], None, 4, cands, offsets, padded, 1),
        lambda: _core.rank(users, g["table"], None, 4, cands, offsets, padded, 2, 1),
    ):
        with pytest.raises(IndexError) as e:
            call()
        assert str(e.value) == msg


def test_minus_one_without_padding_is_out_of_range():
    g = _good()
    cands = np.array([1, -1], dtype=np.int64)
    with pytest.raises(IndexError, match=r"candidate -1 out of range .* \(request 0, position 1\)"):
        _core.score(g["users"], g["table"], None, 4, cands, None, False, 1)


def test_bad_k_and_threads():
    g = _good()
    args = [g["users"], g["table"], None, 4, g["candidates"], None, False]
    with pytest.raises(ValueError, match="k must be"):
        _core.rank(*args, -2, 1)
    with pytest.raises(ValueError, match="threads must be"):
        _core.rank(*args, 1, -1)
    with pytest.raises(ValueError, match="threads must be"):
        _core.score(*args, -1)


def test_readonly_inputs_accepted():
    g = _good()
    for a in (g["users"], g["table"], g["candidates"]):
        a.setflags(write=False)
    s, _ = _core.score(g["users"], g["table"], None, 4, g["candidates"], None, False, 1)
    assert len(s) == 3


# ---------------------------------------------------------------------------------------------
# kernel selection and build info


def test_kernel_selection():
    assert "serial" in KERNELS
    assert _core.active_kernel() in KERNELS
    with pytest.raises(ValueError, match="unknown"):
        _core.set_kernel("bogus")
    info = _core.build_info()
    for key in ("compiler", "compile_flags", "kernel", "kernels_available", "hardware_concurrency"):
        assert key in info
    assert info["sizeof_index"] == 8 and info["sizeof_float"] == 4
    assert info["kernel"] == _core.active_kernel()
    assert "-ffast-math" not in info["compile_flags"]


def test_kernel_env_var():
    code = "from rankcore import _core; print(_core.active_kernel())"
    env = dict(os.environ, RANKCORE_KERNEL="serial")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "serial"
    env["RANKCORE_KERNEL"] = "nonsense"
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == KERNELS[-1]
    assert "RANKCORE_KERNEL=nonsense" in out.stderr


# ---------------------------------------------------------------------------------------------
# IdIndex


IDS = ["item-1", "", "ünïcødé", "日本語", "🙂", "item-10", "a" * 100, "x\x00y"]


def test_idindex_basic():
    ix = _core.IdIndex(IDS)
    assert len(ix) == len(IDS)
    for i, s in enumerate(IDS):
        assert ix.get(s) == i and s in ix and ix.id_at(i) == s
    assert ix.get("nope") == -1 and "nope" not in ix and 3 not in ix
    got = ix.lookup(["🙂", "zz", "", "item-1", "item-"])
    assert got.dtype == np.int64 and list(got) == [4, -1, 1, 0, -1]
    assert list(ix.lookup(tuple(IDS))) == list(range(len(IDS)))
    assert list(ix.lookup(np.array(IDS[:7], dtype=object))) == list(range(7))
    assert list(ix.lookup(np.array(IDS[:7]))) == list(range(7))  # '<U' array (no NUL-ending ids)
    assert list(ix.lookup(np.array(IDS[:7])[::2])) == [0, 2, 4, 6]
    assert len(ix.lookup([])) == 0
    data, offsets = ix.blob()
    assert data.dtype == np.uint8 and offsets.dtype == np.int64 and len(offsets) == len(IDS) + 1
    assert bytes(data[offsets[2] : offsets[3]]).decode() == IDS[2]
    assert "IdIndex(8 ids)" == repr(ix)


def test_idindex_from_blob():
    data, offsets = _core.IdIndex(IDS).blob()
    ix = _core.IdIndex.from_blob(np.array(data), np.array(offsets))
    assert [ix.id_at(i) for i in range(len(ix))] == IDS
    assert list(ix.lookup(IDS[::-1])) == list(range(len(IDS)))[::-1]
    empty = _core.IdIndex.from_blob(np.zeros(0, np.uint8), np.zeros(1, np.int64))
    assert len(empty) == 0 and list(empty.lookup(["a", ""])) == [-1, -1]
    with pytest.raises(TypeError, match="data must be"):
        _core.IdIndex.from_blob(data.astype(np.int8), offsets)
    with pytest.raises(ValueError, match="non-decreasing"):
        _core.IdIndex.from_blob(data, np.array([0, 3, 2], np.int64))
    with pytest.raises(ValueError, match="exceeds"):
        _core.IdIndex.from_blob(data, np.array([0, len(data) + 1], np.int64))
    with pytest.raises(ValueError, match="duplicate id 'ab' at rows 0 and 1"):
        _core.IdIndex.from_blob(np.frombuffer(b"abab", np.uint8), np.array([0, 2, 4], np.int64))


def test_idindex_errors():
    with pytest.raises(ValueError, match=r"duplicate id 'b' at rows 1 and 3"):
        _core.IdIndex(["a", "b", "c", "b"])
    with pytest.raises(ValueError, match=r"duplicate id '' at rows 0 and 2"):
        _core.IdIndex(["", "x", ""])
    with pytest.raises(TypeError, match=r"ids\[2\] is int, not str"):
        _core.IdIndex(["a", "b", 3])
    ix = _core.IdIndex(["a", "b"])
    with pytest.raises(TypeError, match=r"ids\[1\] is bytes, not str"):
        ix.lookup(["a", b"b"])
    with pytest.raises(TypeError, match=r"ids\[0\] is NoneType"):
        ix.lookup(np.array([None], dtype=object))
    with pytest.raises(TypeError):
        ix.lookup(np.array([1, 2]))
    with pytest.raises(TypeError):
        ix.lookup("ab")
    with pytest.raises(TypeError):
        ix.get(1)
    with pytest.raises(IndexError):
        ix.id_at(2)
    with pytest.raises(IndexError):
        ix.id_at(-1)
    assert list(ix.lookup(["\ud800", "a"])) == [-1, 0]  # lone surrogate: cannot be an id
    with pytest.raises(UnicodeEncodeError):
        _core.IdIndex(["\ud800"])


def test_idindex_large():
    n = 200_000
    ids = [f"item-{i:07d}" for i in range(n)]
    ix = _core.IdIndex(ids)
    rng = np.random.default_rng(11)
    rows = rng.integers(0, n, 5000)
    query = [ids[r] for r in rows] + [f"missing-{i}" for i in range(100)]
    got = ix.lookup(query)
    np.testing.assert_array_equal(got[:5000], rows)
    assert np.all(got[5000:] == -1)


def test_idindex_every_length_and_near_misses():
    """Slots hold ids of <= 8 bytes inline and longer ones by blob offset (idindex.h): cover both
    sides of every length boundary, ids differing in a single byte at each position, and ids
    longer than the 16-bit length field."""
    rng = np.random.default_rng(5)
    alphabet = np.array(list("abcdefghij0123456789-é"))
    ids = sorted({"".join(rng.choice(alphabet, n)) for n in range(0, 41) for _ in range(30)})
    ids += ["z" * 70_000, "z" * 69_999 + "y", "é" * 40_000]
    ix = _core.IdIndex(ids)
    np.testing.assert_array_equal(ix.lookup(ids), np.arange(len(ids)))
    assert all(ix.get(s) == i for i, s in list(enumerate(ids))[::7])
    known = set(ids)
    misses = []
    for s in ids[:400]:
        for k in range(len(s)):  # same length, one character changed
            t = s[:k] + ("#" if s[k] != "#" else "%") + s[k + 1 :]
            if t not in known:
                misses.append(t)
        misses += [s + "x", s[:-1]] if s[:-1] not in known else [s + "x"]
    misses += ["z" * 70_001, "z" * 69_999 + "x", "é" * 39_999 + "e"]
    misses = [t for t in misses if t not in known]
    assert np.all(ix.lookup(misses) == -1)
    assert all(ix.get(t) == -1 for t in misses[::11])


@pytest.mark.parametrize("K", [33, 700, 4096, 4097, 9000])
@pytest.mark.parametrize("shape", ["normal", "skewed", "ties"])
def test_sort_paths(kernel, K, shape):
    """Exercise every ordering path (insertion, bucket, top-k selection, LSD radix) and skewed keys."""
    rng = np.random.default_rng(K)
    dim = 4
    table = rng.standard_normal((K, dim)).astype(np.float32)
    if shape == "skewed":  # one dominant logit, the rest packed in a narrow band
        table[:, 0] = 1e-3 * table[:, 0]
        table[7, 0] = 60.0
    elif shape == "ties":
        table = np.repeat(table[:5], K // 5 + 1, axis=0)[:K].copy()
    user = np.array([1.0, 0.5, -0.25, 0.125], dtype=np.float32)
    cands = rng.permutation(K).astype(np.int64)
    full_s, _ = _core.score(user[None, :], table, None, dim, cands, None, False, 1)
    for k in (-1, 3, K // 2):
        pos, _, scores, _, _ = _core.rank(user[None, :], table, None, dim, cands, None, False, k, 1)
        expected = np.argsort(-full_s, kind="stable")
        np.testing.assert_array_equal(pos, expected[: len(pos)])
