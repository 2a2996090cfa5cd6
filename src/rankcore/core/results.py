"""Result objects of the scoring API: ``Ranking``, ``BatchRanking``, ``Scores``, ``BatchScores``."""
from __future__ import annotations

import numpy as np

__all__ = ["Ranking", "BatchRanking", "Scores", "BatchScores"]


def _request_index(offsets: np.ndarray, i) -> tuple:
    """``(i, lo, hi)``: request ``i`` (negative counts from the end) and its CSR bounds."""
    n = int(offsets.shape[0] - 1)
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"request {i} out of range for a batch of {n}")
    return i, int(offsets[i]), int(offsets[i + 1])


class Ranking:
    """Ranked candidates of one request, best first.

    Attributes
    ----------
    positions : ndarray of int64
        Indices into the request's candidate list.
    items : ndarray of int64
        Item rows, ``candidates[positions]``.
    scores : ndarray of float32
        Softmax probabilities over all the request's candidates (also when ``k`` cut the list).
    logits : ndarray of float32
        ``dot(table[item], user) + bias[item]``.
    """

    __slots__ = ("positions", "items", "scores", "logits")

    def __init__(self, positions, items, scores, logits):
        self.positions = positions
        self.items = items
        self.scores = scores
        self.logits = logits

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def __repr__(self) -> str:
        return f"Ranking(items={self.items.tolist()!r}, scores={self.scores.tolist()!r})"


class BatchRanking:
    """Rankings of a batch: flat arrays with CSR ``offsets``; ``result[i]`` is request i's Ranking."""

    __slots__ = ("positions", "items", "scores", "logits", "offsets")

    def __init__(self, positions, items, scores, logits, offsets):
        self.positions = positions
        self.items = items
        self.scores = scores
        self.logits = logits
        self.offsets = offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> Ranking:
        _, lo, hi = _request_index(self.offsets, i)
        return Ranking(self.positions[lo:hi], self.items[lo:hi], self.scores[lo:hi], self.logits[lo:hi])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"BatchRanking(requests={len(self)}, items={self.items.shape[0]})"


class Scores:
    """Probabilities and logits of one request in input order."""

    __slots__ = ("scores", "logits")

    def __init__(self, scores, logits):
        self.scores = scores
        self.logits = logits

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return f"Scores(scores={self.scores.tolist()!r})"


class BatchScores:
    """Scores of a batch in input order: flat (or (B, K) for padded input) with ``offsets``."""

    __slots__ = ("scores", "logits", "offsets")

    def __init__(self, scores, logits, offsets):
        self.scores = scores
        self.logits = logits
        self.offsets = offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> Scores:
        i, lo, hi = _request_index(self.offsets, i)
        if self.scores.ndim == 2:
            return Scores(self.scores[i], self.logits[i])
        return Scores(self.scores[lo:hi], self.logits[lo:hi])

    def __iter__(self):
        return (self[i] for i in range(len(self)))
