"""Personalize's solution metrics and evaluation protocol.

Layer 5 (beside ``serve``, ``batch`` and ``train``): ``metrics`` computes the metrics from
recommendation lists, ``protocol`` splits interactions, folds held-out users in and ranks the
whole catalog, beside a popularity baseline.
"""
from __future__ import annotations

from .metrics import METRIC_NAMES, solution_metrics
from .protocol import catalog_top_k, evaluate, split_interactions

__all__ = ["solution_metrics", "evaluate", "split_interactions", "catalog_top_k", "METRIC_NAMES"]
