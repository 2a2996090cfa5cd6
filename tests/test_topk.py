"""Exact catalog-wide top-K (``rankcore.topk`` / ``topk_batch``) against a float64 NumPy oracle.

Every behavioural test runs on each backend, and the C++ backend once per SIMD kernel this CPU
supports (forced with ``set_kernel``, restored afterwards). Tolerance policy:
- Tables of small integers with integer (or power-of-two scaled) user vectors and bias: every dot
  product is exact in float32, so items, their order (ties in catalog order) and logits must equal
  the oracle's exactly; scores match to 1e-6 (relative; float32 exp terms summed in float64)
  and the log-normaliser to 1e-6.
- Random normal tables: scores within 1e-6 of the oracle's, the log-normaliser within 1e-6, and a
  returned item may differ from the oracle's only by a near-tie (logits within 1e-5).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rankcore
from rankcore.core import native

IMPLS = [("cpp", k) for k in (native.core.available_kernels() if native.HAS_NATIVE else [])]
IMPLS += [(b, None) for b in rankcore.available_backends() if b != "cpp"]
DIMS = [1, 3, 17, 65, 129]


@pytest.fixture(params=IMPLS, ids=[b if k is None else f"{b}-{k}" for b, k in IMPLS])
def impl(request):
    backend, kernel = request.param
    if kernel is None:
        yield backend
        return
    previous = native.core.active_kernel()
    native.core.set_kernel(kernel)
    try:
        yield backend
    finally:
        native.core.set_kernel(previous)


def oracle(emb, bias, user, k, allowed=None, exclude=(), scale=1.0):
    """(rows, logits, scores, log_normalizer) in float64 from the same float32 inputs."""
    lg = emb.astype(np.float64) @ np.asarray(user, dtype=np.float32).astype(np.float64)
    if bias is not None:
        lg = lg + bias.astype(np.float64)
    lg = lg * float(np.float32(scale))
    m = lg.max()
    lse = m + np.log(np.exp(lg - m).sum())
    ok = np.ones(emb.shape[0], dtype=bool)
    if allowed is not None:
        ok &= np.asarray(allowed) != 0
    ok[np.asarray(list(exclude), dtype=np.int64)] = False
    rows = np.flatnonzero(ok)
    rows = rows[np.lexsort((rows, -lg[rows]))][:k]
    return rows, lg[rows], np.exp(lg[rows] - lse), lse


def int_table(rng, n, d, bias=True, dup=True):
    emb = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    if dup:  # exact ties: a third of the rows repeat earlier rows
        src = rng.integers(0, n, size=n // 3)
        dst = rng.integers(0, n, size=n // 3)
        emb[dst] = emb[src]
    b = rng.integers(-2, 3, size=n).astype(np.float32) if bias else None
    if bias and dup:
        b[dst] = b[src]
    return emb, b


def check_exact(res, emb, bias, user, k, **kw):
    rows, lg, sc, lse = oracle(emb, bias, user, k, **kw)
    np.testing.assert_array_equal(res.items, rows)
    np.testing.assert_array_equal(res.logits, lg.astype(np.float32))
    np.testing.assert_allclose(res.scores, sc, rtol=1e-6, atol=1e-7)
    assert res.log_normalizer == pytest.approx(lse, rel=1e-7, abs=1e-6)
    assert res.items.dtype == np.int64 and res.logits.dtype == np.float32 and res.scores.dtype == np.float64


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_exact_against_oracle(impl, d, with_bias):
    rng = np.random.default_rng(d)
    emb, b = int_table(rng, 300, d, bias=with_bias)
    table = rankcore.ItemTable(emb, b)
    user = rng.integers(-2, 3, size=d).astype(np.float32)
    for k in (1, 7, 25):
        check_exact(rankcore.topk(user, table, k, backend=impl), emb, b, user, k)


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.25])
def test_scale(impl, scale):
    rng = np.random.default_rng(3)
    emb, b = int_table(rng, 200, 17)
    table = rankcore.ItemTable(emb, b)
    user = rng.integers(-2, 3, size=17).astype(np.float32)
    check_exact(rankcore.topk(user, table, 10, scale=scale, backend=impl), emb, b, user, 10, scale=scale)


def test_random_normal_scores(impl):
    rng = np.random.default_rng(7)
    emb = (rng.standard_normal((3000, 32)) / 4).astype(np.float32)
    b = (0.1 * rng.standard_normal(3000)).astype(np.float32)
    user = rng.standard_normal(32).astype(np.float32)
    res = rankcore.topk(user, rankcore.ItemTable(emb, b), 20, backend=impl)
    rows, lg, sc, lse = oracle(emb, b, user, 20)
    assert res.log_normalizer == pytest.approx(lse, abs=1e-6)
    full = emb.astype(np.float64) @ user.astype(np.float64) + b
    np.testing.assert_allclose(res.scores, np.exp(full[res.items] - lse), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.logits, full[res.items], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full[res.items], lg, rtol=0, atol=1e-5)  # same list up to near-ties
    assert np.all(np.diff(res.logits) <= 0)


def test_ties_in_catalog_order(impl):
    emb = np.ones((50, 5), dtype=np.float32)
    table = rankcore.ItemTable(emb)
    user = np.ones(5, dtype=np.float32)
    res = rankcore.topk(user, table, 10, backend=impl)
    np.testing.assert_array_equal(res.items, np.arange(10))
    allowed = np.zeros(50, dtype=bool)
    allowed[[40, 3, 17, 29]] = True
    res = rankcore.topk(user, table, 3, allowed=allowed, exclude=[17], backend=impl)
    np.testing.assert_array_equal(res.items, [3, 29, 40])
    np.testing.assert_allclose(res.scores, 1 / 50, rtol=1e-12)


def test_ties_found_out_of_catalog_order(impl):
    # The native scan reads a single user's catalog as several runs side by side, so a tied row
    # with a lower index (row 300, early in the first run) can be read after one with a higher
    # index (row 1300, start of the second run): the lower row must still win the tie.
    emb = np.zeros((5000, 8), dtype=np.float32)
    emb[:, 0] = np.linspace(-1, 0, 5000, dtype=np.float32)
    emb[[300, 1300, 4999], 0] = 2.0
    user = np.ones(8, dtype=np.float32)
    table = rankcore.ItemTable(emb)
    for k, want in [(1, [300]), (2, [300, 1300]), (3, [300, 1300, 4999])]:
        np.testing.assert_array_equal(rankcore.topk(user, table, k, backend=impl).items, want)
    res = rankcore.topk(user, table, 2, exclude=[300], backend=impl)
    np.testing.assert_array_equal(res.items, [1300, 4999])


def test_mask_and_exclude_count_in_normaliser_never_returned(impl):
    rng = np.random.default_rng(11)
    emb, b = int_table(rng, 400, 9)
    table = rankcore.ItemTable(emb, b)
    user = rng.integers(-2, 3, size=9).astype(np.float32)
    allowed = rng.random(400) < 0.3
    exclude = rng.choice(np.flatnonzero(allowed), size=5, replace=False)
    res = rankcore.topk(user, table, 40, allowed=allowed, exclude=exclude, backend=impl)
    assert allowed[res.items].all() and not np.isin(res.items, exclude).any()
    check_exact(res, emb, b, user, 40, allowed=allowed, exclude=exclude)
    assert res.log_normalizer == rankcore.topk(user, table, 1, backend=impl).log_normalizer


def test_k_beyond_catalog_and_allowed(impl):
    rng = np.random.default_rng(5)
    emb, b = int_table(rng, 30, 3)
    table = rankcore.ItemTable(emb, b)
    user = rng.integers(-2, 3, size=3).astype(np.float32)
    res = rankcore.topk(user, table, 100, backend=impl)
    assert len(res) == 30
    check_exact(res, emb, b, user, 100)
    allowed = np.zeros(30, dtype=np.uint8)
    allowed[[2, 9, 11]] = 1
    res = rankcore.topk(user, table, 10, allowed=allowed, exclude=[9], backend=impl)
    assert sorted(res.items.tolist()) == [2, 11]
    check_exact(res, emb, b, user, 10, allowed=allowed, exclude=[9])


def test_all_masked(impl):
    rng = np.random.default_rng(2)
    emb, b = int_table(rng, 64, 17)
    user = rng.integers(-2, 3, size=17).astype(np.float32)
    res = rankcore.topk(user, rankcore.ItemTable(emb, b), 5, allowed=np.zeros(64, dtype=bool), backend=impl)
    assert len(res) == 0 and res.items.shape == (0,) and res.scores.shape == (0,)
    assert res.log_normalizer == pytest.approx(oracle(emb, b, user, 1)[3], abs=1e-6)


def test_extreme_logits_stay_finite(impl):
    # float32 overflow: 1e30 * 1e30 is inf in float32; the request is redone in float64
    emb = np.array([[1e30, 0.0], [2e30, 0.0], [-1e30, 0.0], [0.0, 1.0]], dtype=np.float32)
    user = np.array([1e30, 1.0], dtype=np.float32)
    res = rankcore.topk(user, rankcore.ItemTable(emb), 4, backend=impl)
    np.testing.assert_array_equal(res.items, [1, 0, 3, 2])
    assert np.isfinite(res.scores).all() and np.isfinite(res.log_normalizer)
    assert res.scores[0] == pytest.approx(1.0) and res.scores[1] == 0.0
    assert res.log_normalizer == pytest.approx(2e60, rel=1e-6)
    # large but float32-finite logits: max-subtraction keeps exp in range
    emb = np.array([[1e4], [1e4 - 1], [-1e4]], dtype=np.float32)
    res = rankcore.topk(np.ones(1, dtype=np.float32), rankcore.ItemTable(emb), 3, backend=impl)
    p = np.array([1.0, np.exp(-1.0)]) / (1 + np.exp(-1.0))
    np.testing.assert_allclose(res.scores[:2], p, rtol=1e-6)
    assert res.scores[2] == 0.0 and np.isfinite(res.log_normalizer)


def test_batch_equals_single(impl):
    rng = np.random.default_rng(9)
    emb = (rng.standard_normal((700, 65)) / 8).astype(np.float32)
    b = (0.1 * rng.standard_normal(700)).astype(np.float32)
    table = rankcore.ItemTable(emb, b)
    users = rng.standard_normal((53, 65)).astype(np.float32)  # not a multiple of any tile
    allowed = rng.random((53, 700)) < 0.5
    exclude = [rng.integers(0, 700, size=i % 4).tolist() for i in range(53)]
    batch = rankcore.topk_batch(users, table, 12, allowed=allowed, exclude=exclude, backend=impl)
    assert len(batch) == 53 and batch.items.shape == (53, 12)
    for i, got in enumerate(batch):
        one = rankcore.topk(users[i], table, 12, allowed=allowed[i], exclude=exclude[i], backend=impl)
        np.testing.assert_array_equal(got.items, one.items)
        np.testing.assert_array_equal(got.logits, one.logits)
        # The float32 terms exp(l - m) are taken against a running max m that depends on how the
        # table was split into blocks, so the normaliser may differ by float32 rounding (~1e-8).
        np.testing.assert_allclose(got.scores, one.scores, rtol=1e-7)
        assert got.log_normalizer == pytest.approx(one.log_normalizer, abs=1e-7)


def test_batch_exclude_forms_and_shared_mask(impl):
    rng = np.random.default_rng(4)
    emb, b = int_table(rng, 120, 3)
    table = rankcore.ItemTable(emb, b)
    users = rng.integers(-2, 3, size=(4, 3)).astype(np.float32)
    allowed = rng.random(120) < 0.7
    shared = rankcore.topk_batch(users, table, 6, allowed=allowed, exclude=[1, 2, 3], backend=impl)
    padded = rankcore.topk_batch(users, table, 6, allowed=allowed, exclude=np.array([[1, 2, 3]] * 4),
                                 backend=impl)
    lists = rankcore.topk_batch(users, table, 6, allowed=allowed,
                                exclude=[[1, 2, 3], [3, 2, 1, -1][:3], (1, 2, 3), np.array([2, 3, 1])],
                                backend=impl)
    for i in range(4):
        check_exact(shared[i], emb, b, users[i], 6, allowed=allowed, exclude=[1, 2, 3])
        for other in (padded, lists):
            np.testing.assert_array_equal(other[i].items, shared[i].items)
    ragged = rankcore.topk_batch(users, table, 6, exclude=np.array([[5, -1], [-1, -1], [6, 7], [8, -1]]),
                                 backend=impl)
    for i, ex in enumerate([[5], [], [6, 7], [8]]):
        check_exact(ragged[i], emb, b, users[i], 6, exclude=ex)
    assert ragged.counts.tolist() == [6, 6, 6, 6]
    np.testing.assert_array_equal(rankcore.topk_batch(users[:0], table, 3, backend=impl).items.shape, (0, 3))


@pytest.mark.skipif(not native.HAS_NATIVE, reason="C++ extension not built")
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threads_split_rows_same_result(threads):
    # big enough for several row ranges per user: the partial top-K lists and sums are merged
    rng = np.random.default_rng(1)
    emb, b = int_table(rng, 40_000, 17)
    table = rankcore.ItemTable(emb, b)
    users = rng.integers(-2, 3, size=(2, 17)).astype(np.float32)
    one = rankcore.topk_batch(users, table, 30, threads=1, backend="cpp")
    many = rankcore.topk_batch(users, table, 30, threads=threads, backend="cpp")
    np.testing.assert_array_equal(one.items, many.items)
    np.testing.assert_array_equal(one.logits, many.logits)
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-7)  # see test_batch_equals_single
    np.testing.assert_allclose(one.log_normalizer, many.log_normalizer, rtol=0, atol=1e-7)
    check_exact(many[1], emb, b, users[1], 30)


@given(n=st.integers(1, 60), d=st.integers(1, 20), k=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       p_allowed=st.floats(0, 1), n_exclude=st.integers(0, 5), with_bias=st.booleans())
def test_properties(n, d, k, seed, p_allowed, n_exclude, with_bias):
    rng = np.random.default_rng(seed)
    emb, b = int_table(rng, n, d, bias=with_bias)
    table = rankcore.ItemTable(emb, b)
    user = rng.integers(-2, 3, size=d).astype(np.float32)
    allowed = rng.random(n) < p_allowed
    exclude = rng.integers(0, n, size=n_exclude)
    eligible = allowed.copy()
    eligible[exclude] = False
    for backend, _ in IMPLS:
        res = rankcore.topk(user, table, k, allowed=allowed, exclude=exclude, backend=backend)
        assert len(res) == min(k, int(eligible.sum()))  # numResults honoured whenever that many qualify
        assert eligible[res.items].all()  # filters never leak
        assert len(set(res.items.tolist())) == len(res)  # no duplicates
        check_exact(res, emb, b, user, k, allowed=allowed, exclude=exclude)


# --------------------------------------------------------------------------- bad inputs

@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return rankcore.ItemTable(rng.standard_normal((20, 4)).astype(np.float32)), np.ones(4, dtype=np.float32)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": 2.5}, TypeError, "k must be an int"),
    ({"k": True}, TypeError, "k must be an int"),
    ({"allowed": np.ones(19, dtype=bool)}, ValueError, "allowed must have shape"),
    ({"allowed": np.ones(20, dtype=np.float32)}, TypeError, "allowed must be a bool or integer mask"),
    ({"exclude": [20]}, IndexError, "excluded row 20 out of range"),
    ({"exclude": [-1]}, IndexError, "excluded row -1 out of range"),
    ({"exclude": [0.5]}, TypeError, "exclude must be integer"),
    ({"scale": float("inf")}, ValueError, "scale must be finite"),
    ({"scale": 1e39}, ValueError, "scale must be finite"),
    ({"threads": 0}, ValueError, "threads must be a positive int"),
])
def test_bad_inputs(impl, small, kwargs, exc, match):
    table, user = small
    args = {"k": 3, **kwargs}
    with pytest.raises(exc, match=match):
        rankcore.topk(user, table, args.pop("k"), backend=impl, **args)


def test_bad_users_and_tables(impl, small):
    table, user = small
    with pytest.raises(ValueError, match="shape"):
        rankcore.topk(np.ones(5, dtype=np.float32), table, 3, backend=impl)
    with pytest.raises(ValueError, match="NaN or inf"):
        rankcore.topk(np.array([1, np.nan, 0, 0], dtype=np.float32), table, 3, backend=impl)
    with pytest.raises(TypeError, match="ItemTable"):
        rankcore.topk(user, np.ones((20, 4), dtype=np.float32), 3, backend=impl)
    users = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="per-user exclude lists"):
        rankcore.topk_batch(users, table, 3, exclude=[[1], [2], [3]], backend=impl)
    with pytest.raises(ValueError, match="allowed must have shape"):
        rankcore.topk_batch(users, table, 3, allowed=np.ones((3, 20), dtype=bool), backend=impl)
    with pytest.raises(IndexError, match="out of range"):
        rankcore.topk_batch(users, table, 3, exclude=[[1], [25]], backend=impl)


@pytest.mark.skipif(not native.HAS_NATIVE, reason="C++ extension not built")
def test_native_checks_exact_arguments():
    topk = native.core.topk
    t = np.ones((10, 16), dtype=np.float32)
    u = np.ones((1, 4), dtype=np.float32)
    ok = dict(users=u, table=t, bias=None, dim=4, k=3, allowed=None, exclude=None, exclude_offsets=None,
              scale=1.0, threads=1)
    rows, logits, scores, counts, lognorm = topk(**ok)
    assert rows.shape == (1, 3) and counts.tolist() == [3] and lognorm[0] == pytest.approx(4 + np.log(10.0))
    bad = [
        ({"users": u.astype(np.float64)}, TypeError, "users must be a C-contiguous float32"),
        ({"table": t[:, ::2]}, ValueError, "C-contiguous"),
        ({"bias": np.ones(9, dtype=np.float32)}, ValueError, "bias has 9 entries"),
        ({"dim": 5}, ValueError, "users has 4 columns"),
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"allowed": np.ones(10, dtype=bool)}, TypeError, "uint8"),
        ({"allowed": np.ones(11, dtype=np.uint8)}, ValueError, "allowed must have shape"),
        ({"exclude": np.array([10])}, IndexError, "excluded row 10"),
        ({"exclude": np.array([1], dtype=np.int32)}, TypeError, "int64"),
        ({"exclude": np.array([1]), "exclude_offsets": np.array([0, 1, 1])}, ValueError, "exclude_offsets"),
        ({"exclude_offsets": np.array([0, 0])}, ValueError, "without exclude"),
        ({"exclude": np.array([1]), "exclude_offsets": np.array([0, 2])}, ValueError, "exclude offsets"),
        ({"scale": float("nan")}, ValueError, "scale"),
        ({"threads": -1}, ValueError, "threads"),
        ({"users": np.full((1, 4), np.inf, dtype=np.float32)}, ValueError, "NaN or inf"),
    ]
    for change, exc, match in bad:
        with pytest.raises(exc, match=match):
            topk(**{**ok, **change})
