"""Personalize's solution metrics and evaluation protocol.

The metrics are checked against Personalize's worked example and hand-computed cases; the
catalog top-K against a per-user full sort; the split against its definition.
"""
import math

import numpy as np
import pandas as pd
import pytest

from rankcore.evaluation import METRIC_NAMES, catalog_top_k, solution_metrics, split_interactions


def test_worked_example_ndcg():
    # relevant items at positions 2 and 5, two relevant in all: Personalize's 0.6241
    m = solution_metrics([["a", "x", "b", "c", "y"]], [{"x", "y"}], "abcxy")
    expected = (1 / math.log(3) + 1 / math.log(6)) / (1 / math.log(2) + 1 / math.log(3))
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(expected, rel=1e-12)
    assert round(m["normalized_discounted_cumulative_gain_at_5"], 4) == 0.6241
    assert m["mean_reciprocal_rank_at_25"] == 0.5
    assert m["precision_at_5"] == pytest.approx(2 / 5)


def test_hand_computed_two_users():
    recs = [["a", "b", "c"], ["x", "y"]]
    rel = [["c"], ["q"]]
    m = solution_metrics(recs, rel, [f"i{k}" for k in range(5)] + ["a", "b", "c", "x", "y"])
    assert list(m) == list(METRIC_NAMES)
    assert m["coverage"] == pytest.approx(5 / 10)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx((1 / 3) / 2)
    assert m["precision_at_5"] == pytest.approx((1 / 5) / 2)
    assert m["precision_at_25"] == pytest.approx((1 / 25) / 2)
    # user a: relevant at position 3 -> (1/log 4) / (1/log 2) = 0.5
    assert m["normalized_discounted_cumulative_gain_at_10"] == pytest.approx(0.25)


def test_only_the_first_25_count_and_ideal_is_capped():
    recs = [[f"n{k}" for k in range(25)] + ["hit"]]
    m = solution_metrics(recs, [["hit"]], recs[0])
    assert m["mean_reciprocal_rank_at_25"] == 0 and m["precision_at_25"] == 0
    # 30 relevant items, all 25 recommended are relevant: NDCG@25 is 1, not less
    many = [f"r{k}" for k in range(30)]
    m = solution_metrics([many[:25]], [many], many)
    assert m["normalized_discounted_cumulative_gain_at_25"] == pytest.approx(1.0)
    assert m["precision_at_25"] == 1.0 and m["coverage"] == pytest.approx(25 / 30)


@pytest.mark.parametrize("args, exc", [
    (([["a"]], [["a"], ["b"]], ["a"]), ValueError),
    (([["a"]], [[]], ["a"]), ValueError),
    (([["a"]], [["a"]], []), ValueError),
    (([], [], ["a"]), ValueError),
    (("ab", ["a", "b"], ["a"]), TypeError),
])
def test_metric_errors(args, exc):
    with pytest.raises(exc):
        solution_metrics(*args)


def reference_top_k(users, items, k, bias=None, exclude=None):
    out = []
    for u, vec in enumerate(users):
        logits = (items @ vec).astype(np.float64) if bias is None else items @ vec + bias
        logits = np.asarray(logits, dtype=np.float32)
        if exclude is not None:
            logits[exclude[u]] = -np.inf
        order = np.lexsort((np.arange(len(logits)), -logits))  # best first, ties to lower row
        out.append(order[:k])
    return np.array(out)


def test_catalog_top_k_matches_full_sort(monkeypatch):
    rng = np.random.default_rng(0)
    users = rng.standard_normal((37, 8)).astype(np.float32)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    items[10] = items[20]  # an exact tie: the lower row comes first
    bias = rng.standard_normal(300).astype(np.float32)
    monkeypatch.setattr("rankcore.evaluation.protocol.BLOCK_ELEMENTS", 300 * 5)  # several blocks
    assert np.array_equal(catalog_top_k(users, items, 25), reference_top_k(users, items, 25))
    logits = users @ items.T + bias
    got = catalog_top_k(users, items, 25, item_bias=bias)
    want = np.array([np.lexsort((np.arange(300), -row))[:25] for row in logits])
    assert np.array_equal(got, want)
    seen = [rng.choice(300, 5, replace=False) for _ in range(37)]
    indptr = np.arange(0, 37 * 5 + 1, 5)
    got = catalog_top_k(users, items, 25, exclude=(indptr, np.concatenate(seen)))
    assert np.array_equal(got, reference_top_k(users, items, 25, exclude=seen))
    assert catalog_top_k(users, items[:7], 25).shape == (37, 7)


def test_split_follows_the_protocol():
    rng = np.random.default_rng(1)
    n = 4000
    frame = pd.DataFrame({"USER_ID": rng.integers(0, 300, n).astype(str),
                          "ITEM_ID": rng.integers(0, 50, n).astype(str),
                          "TIMESTAMP": rng.integers(0, 10**6, n)})
    split = split_interactions(frame, seed=5)
    eligible = (frame["USER_ID"].value_counts() >= 2).sum()
    assert len(split) == round(0.1 * eligible)
    for u in range(len(split)):
        inp = split.input_rows[split.input_indptr[u]:split.input_indptr[u + 1]]
        truth = split.truth_rows[split.truth_indptr[u]:split.truth_indptr[u + 1]]
        all_rows = np.flatnonzero(frame["USER_ID"].to_numpy() == split.users[u])
        assert sorted(np.concatenate([inp, truth])) == sorted(all_rows)
        assert len(truth) == math.ceil(len(all_rows) / 10) and len(inp) >= 1
        ts = frame["TIMESTAMP"].to_numpy()
        assert ts[inp].max() <= ts[truth].min()
    assert split.truth_mask.sum() == len(split.truth_rows)
    again = split_interactions(frame, seed=5)
    assert again.users == split.users and np.array_equal(again.truth_rows, split.truth_rows)
    assert split_interactions(frame, seed=6).users != split.users
