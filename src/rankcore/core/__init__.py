"""The scoring core: ``ItemTable``, ``rank``/``score`` (single and batched), backend selection.

Layer 1 (bottom). ``native`` is the one loader of the compiled extension; ``backend`` picks
``cpp``, ``numba`` (``numba_backend``) or ``numpy`` (``reference``) per call; ``api`` converts
inputs visibly and calls the chosen backend; ``table`` and ``results`` hold the data types;
``topk`` is the exact catalog-wide top-K with the softmax normaliser (``numba_topk`` its numba twin).
"""
from __future__ import annotations

from .api import BatchRanking, BatchScores, ItemTable, Ranking, Scores, rank, rank_batch, score, score_batch
from .backend import HAS_CPP, HAS_NUMBA, available_backends, resolve_name
from .table import aligned_zeros
from .topk import BatchTopK, TopK, topk, topk_batch

__all__ = ["ItemTable", "Ranking", "BatchRanking", "Scores", "BatchScores", "rank", "rank_batch",
           "score", "score_batch", "HAS_CPP", "HAS_NUMBA", "available_backends", "resolve_name",
           "aligned_zeros", "TopK", "BatchTopK", "topk", "topk_batch"]
