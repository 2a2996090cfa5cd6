"""Hypothesis properties of the scoring core, on every backend, against the float64 oracle.

Tolerances follow ``oracle.py``. Each property draws a small table, a user and candidates
(with duplicates allowed), so the search space covers ties, K=0/1, tiny and huge magnitudes.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rankcore
from oracle import check_ranking_order, dot_scale, logits64, softmax64

BACKENDS = rankcore.available_backends()

finite32 = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def problems(draw, elements=finite32, max_n=40, max_d=20, max_k=60, bias=None):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    emb = draw(hnp.arrays(np.float32, (n, d), elements=elements))
    user = draw(hnp.arrays(np.float32, (d,), elements=elements))
    with_bias = draw(st.booleans()) if bias is None else bias
    b = draw(hnp.arrays(np.float32, (n,), elements=elements)) if with_bias else None
    k = draw(st.integers(0, max_k))
    cands = draw(hnp.arrays(np.int64, (k,), elements=st.integers(0, n - 1)))
    return emb, b, user, cands


def _check_against_oracle(emb, b, user, cands, r):
    l64 = logits64(user, emb, b, cands)
    scale = dot_scale(user, emb, b, cands)
    # logits: float32 accumulation error bound
    lg = r.logits.astype(np.float64)
    np.testing.assert_array_less(np.abs(lg - l64[r.positions]), 1e-5 * scale[r.positions] + 1e-30)
    # softmax of the backend's own logits, within 1e-6
    own = np.empty(len(cands))
    own[r.positions] = lg
    np.testing.assert_allclose(r.scores, softmax64(own)[r.positions], atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@given(problems())
def test_rank_properties(backend, prob):
    emb, b, user, cands = prob
    t = rankcore.ItemTable(emb, bias=b)
    r = rankcore.rank(user, t, cands, backend=backend)
    assert len(r) == len(cands)
    assert sorted(r.positions.tolist()) == list(range(len(cands)))
    np.testing.assert_array_equal(r.items, cands[r.positions])
    assert np.all(np.isfinite(r.scores))
    if len(cands):
        assert abs(float(r.scores.sum(dtype=np.float64)) - 1.0) < 1e-5
    check_ranking_order(r.scores, r.positions)
    # order follows logits: a candidate ranked above another never has a smaller logit unless
    # their scores are equal (both underflowed, or both rounded to the same float32)
    lg = r.logits
    assert np.all((lg[:-1] >= lg[1:]) | (r.scores[:-1] == r.scores[1:]))
    _check_against_oracle(emb, b, user, cands, r)


@pytest.mark.parametrize("backend", BACKENDS)
@given(problems(), st.randoms(use_true_random=False))
def test_permutation_only_moves_positions(backend, prob, rnd):
    emb, b, user, cands = prob
    t = rankcore.ItemTable(emb, bias=b)
    perm = np.array(rnd.sample(range(len(cands)), len(cands)), dtype=np.int64)
    a = rankcore.score(user, t, cands, backend=backend)
    p = rankcore.score(user, t, cands[perm], backend=backend)
    np.testing.assert_array_equal(p.logits, a.logits[perm])
    np.testing.assert_allclose(p.scores, a.scores[perm], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(st.lists(problems(max_n=30, max_d=9, bias=False), min_size=1, max_size=5), st.integers(0, 8))
def test_batch_equals_rows(backend, probs, k):
    emb, _, _, _ = probs[0]
    t = rankcore.ItemTable(emb)
    d = emb.shape[1]
    users = np.stack([np.resize(p[2], d) for p in probs])
    lists = [p[3] % emb.shape[0] for p in probs]
    offsets = np.r_[0, np.cumsum([len(c) for c in lists])].astype(np.int64)
    flat = np.concatenate(lists).astype(np.int64)
    res = rankcore.rank_batch(users, t, flat, offsets, k=k, backend=backend, threads=2)
    sb = rankcore.score_batch(users, t, flat, offsets, backend=backend)
    for i, c in enumerate(lists):
        one = rankcore.rank(users[i], t, c, k=k, backend=backend)
        np.testing.assert_array_equal(res[i].positions, one.positions)
        np.testing.assert_array_equal(res[i].scores, one.scores)
        full = rankcore.rank(users[i], t, c, backend=backend)
        np.testing.assert_array_equal(one.positions, full.positions[:k])  # top-k = head
        np.testing.assert_array_equal(sb[i].scores[full.positions], full.scores)


@pytest.mark.parametrize("backend", BACKENDS)
@given(problems(elements=st.floats(-3, 3, width=32), bias=True), st.floats(-50, 50))
def test_shift_invariance(backend, prob, shift):
    emb, b, user, cands = prob
    assume(len(cands) > 0)
    r0 = rankcore.score(user, rankcore.ItemTable(emb, bias=b), cands, backend=backend)
    r1 = rankcore.score(user, rankcore.ItemTable(emb, bias=b + np.float32(shift)), cands, backend=backend)
    np.testing.assert_allclose(r1.scores, r0.scores, atol=2e-5)


extreme = st.one_of(st.just(0.0), st.floats(-1e30, 1e30).map(np.float32), st.sampled_from([1e30, -1e30, 3e38, -3e38]))


@pytest.mark.parametrize("backend", BACKENDS)
@given(problems(elements=extreme, max_d=8))
def test_extreme_logits_stay_finite(backend, prob):
    emb, b, user, cands = prob
    t = rankcore.ItemTable(emb, bias=b)
    r = rankcore.rank(user, t, cands, backend=backend)
    assert not np.any(np.isnan(r.scores))
    assert np.all((r.scores >= 0) & (r.scores <= 1))
    if len(cands):
        assert abs(float(r.scores.sum(dtype=np.float64)) - 1.0) < 1e-5
    check_ranking_order(r.scores, r.positions)


@pytest.mark.parametrize("backend", BACKENDS)
@given(problems(elements=st.floats(-1, 1, width=32), max_d=8))
def test_scores_match_float64_reference(backend, prob):
    emb, b, user, cands = prob
    r = rankcore.rank(user, rankcore.ItemTable(emb, bias=b), cands, backend=backend)
    np.testing.assert_allclose(r.scores, softmax64(logits64(user, emb, b, cands))[r.positions], atol=1e-6, rtol=0)


@given(problems(elements=st.floats(-1, 1, width=32), max_d=8))
def test_backends_agree(prob):
    # Unit-scale values: with large logits the float32 dot products of different backends (SIMD
    # lanes vs one running sum) differ by an ulp of the logit, which moves scores by far more
    # than 1e-6; that regime is covered against each backend's own logits above.
    emb, b, user, cands = prob
    t = rankcore.ItemTable(emb, bias=b)
    ref = rankcore.rank(user, t, cands, backend="numpy")
    for backend in BACKENDS:
        r = rankcore.rank(user, t, cands, backend=backend)
        # same item/score pairs; order may differ only between near-equal scores
        s_ref = np.empty(len(cands))
        s_ref[ref.positions] = ref.scores
        s = np.empty(len(cands))
        s[r.positions] = r.scores
        np.testing.assert_allclose(s, s_ref, atol=2e-6)
        np.testing.assert_array_less(np.abs(s_ref[r.positions] - ref.scores), 2e-6 + 1e-12)
