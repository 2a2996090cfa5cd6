"""Personalize's solution metrics, from recommendation lists and the items each user went on to use.

Definitions (see docs/personalize.md), averaged over users:

* ``mean_reciprocal_rank_at_25``: 1 / position of the first relevant item in the top 25, 0 if none;
* ``precision_at_K``: relevant items in the top K divided by K;
* ``normalized_discounted_cumulative_gain_at_K``: each relevant item at position p (from 1) gains
  1 / log(1 + p), divided by the same sum for the ideal list (all relevant items first);
* ``coverage``: distinct recommended items / distinct catalog items (not averaged).

Personalize's worked example (relevant items at positions 2 and 5, two relevant in all) gives
NDCG (1/log 3 + 1/log 6) / (1/log 2 + 1/log 3) = 0.6241.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["solution_metrics", "metrics_from_hits", "METRIC_NAMES", "TOP_K"]

#: Recommendation list length the metrics look at.
TOP_K = 25
METRIC_NAMES = ("coverage", "mean_reciprocal_rank_at_25",
                "normalized_discounted_cumulative_gain_at_5",
                "normalized_discounted_cumulative_gain_at_10",
                "normalized_discounted_cumulative_gain_at_25",
                "precision_at_5", "precision_at_10", "precision_at_25")

_GAIN = 1.0 / np.log1p(np.arange(1, TOP_K + 1))  # position p (1-based) gains 1 / log(1 + p)


def metrics_from_hits(hits: np.ndarray, n_relevant: np.ndarray, n_recommended_items: int,
                      n_catalog_items: int) -> dict:
    """The metrics from ``hits`` bool (users, <= 25): position j of user u's list is relevant.

    ``n_relevant`` int (users,) counts each user's relevant items (>= 1); the last two arguments
    give coverage's numerator and denominator.
    """
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    if hits.ndim != 2 or hits.shape[1] > TOP_K or n_rel.shape != (hits.shape[0],):
        raise ValueError(f"hits must be (users, <= {TOP_K}) with one relevant count per user")
    if hits.shape[0] == 0:
        raise ValueError("no users to evaluate")
    if (n_rel < 1).any():
        raise ValueError(f"user {int(np.argmax(n_rel < 1))} has no relevant item")
    if n_catalog_items < 1:
        raise ValueError("the catalog is empty")
    full = np.zeros((hits.shape[0], TOP_K), dtype=bool)
    full[:, :hits.shape[1]] = hits
    first = np.where(full.any(axis=1), full.argmax(axis=1) + 1, 0)
    out = {"coverage": n_recommended_items / n_catalog_items,
           "mean_reciprocal_rank_at_25": float(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0).mean())}
    ideal_cum = np.cumsum(_GAIN)
    for k in (5, 10, 25):
        dcg = (full[:, :k] * _GAIN[:k]).sum(axis=1)
        idcg = ideal_cum[np.minimum(n_rel, k) - 1]
        out[f"normalized_discounted_cumulative_gain_at_{k}"] = float((dcg / idcg).mean())
    for k in (5, 10, 25):
        out[f"precision_at_{k}"] = float(full[:, :k].sum(axis=1).mean() / k)
    return {name: float(out[name]) for name in METRIC_NAMES}


def solution_metrics(recommended: Sequence[Sequence], relevant: Sequence[Iterable],
                     catalog_items: Iterable) -> dict:
    """Personalize's solution metrics (names as Personalize reports them; see the module doc).

    ``recommended``: per user, item IDs best first (only the first 25 count); ``relevant``: per
    user, the items that user interacted with afterwards (at least one); ``catalog_items``: every
    item that could be recommended. Raises ValueError on mismatched lengths, no users, a user with
    nothing relevant, or an empty catalog.
    """
    if isinstance(recommended, (str, bytes)) or isinstance(relevant, (str, bytes)):
        raise TypeError("recommended and relevant must be one list of items per user")
    recommended, relevant = list(recommended), list(relevant)
    if len(recommended) != len(relevant):
        raise ValueError(f"{len(recommended)} recommendation lists for {len(relevant)} relevant sets")
    hits = np.zeros((len(recommended), TOP_K), dtype=bool)
    n_rel = np.zeros(len(recommended), dtype=np.int64)
    shown: set = set()
    for u, (recs, rel) in enumerate(zip(recommended, relevant)):
        if isinstance(recs, str) or isinstance(rel, str):
            raise TypeError(f"user {u}: give a list of items, not one string")
        top = list(recs)[:TOP_K]
        rel = set(rel)
        n_rel[u] = len(rel)
        hits[u, :len(top)] = [r in rel for r in top]
        shown.update(top)
    catalog = set(catalog_items)
    return metrics_from_hits(hits, n_rel, len(shown), len(catalog))
