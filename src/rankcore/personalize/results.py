"""``RankingResult``: one GetPersonalizedRanking answer of ``Campaign.rank``.

Scored items (highest first) are kept as positions into the request's input list plus their
float32 scores and model rows; unknown items follow without a score. ``to_response`` builds the
service's response body (see docs/personalize.md) through ``response.ranking_entries``.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Sequence

import numpy as np

from .response import ranking_entries

__all__ = ["RankingResult"]


def _take(seq: Sequence, positions: list) -> list:
    """``[seq[p] for p in positions]`` at C speed."""
    n = len(positions)
    if n > 1:
        return list(itemgetter(*positions)(seq))
    return [seq[positions[0]]] if n else []


class RankingResult:
    """One ranking: scored items (highest first), then the unknown items.

    ``input_ids`` is the request's item list (a list or tuple of str, as ``Campaign`` passes it).

    Attributes
    ----------
    scores : float32 (n_scored,)
        Softmax scores of the scored items, descending, summing to 1.
    item_rows : int64 (n_scored,)
        Model rows of the scored items.
    positions : int64 (n_scored,)
        Positions of the scored items in the input list.
    recommendation_id : str
        ``RID-<uuid4>``.
    """

    __slots__ = ("_input", "positions", "scores", "item_rows", "unknown_item_ids",
                 "recommendation_id", "_meta")

    def __init__(self, input_ids: Sequence[str], positions: np.ndarray, scores: np.ndarray,
                 item_rows: np.ndarray, unknown_item_ids: list, recommendation_id: str,
                 metadata_columns: list | None = None):
        self._input = input_ids
        self.positions = positions
        self.scores = scores
        self.item_rows = item_rows
        self.unknown_item_ids = unknown_item_ids
        self.recommendation_id = recommendation_id
        self._meta = metadata_columns

    @property
    def scored_item_ids(self) -> list:
        """IDs of the scored items, highest score first."""
        return _take(self._input, self.positions.tolist())

    @property
    def item_ids(self) -> list:
        """All returned IDs: scored items, then unknown items in input order."""
        return self.scored_item_ids + list(self.unknown_item_ids)

    @property
    def metadata(self) -> list | None:
        """Per scored item ``{column: value}`` (values str, missing values omitted), or None."""
        if self._meta is None:
            return None
        rows = self.item_rows
        per_col = [(name, col.as_strings(rows)) for name, col in self._meta]
        out = []
        for i in range(len(rows)):
            out.append({name: vals[i] for name, vals in per_col if vals[i] is not None})
        return out

    def __len__(self) -> int:
        return len(self.positions) + len(self.unknown_item_ids)

    def __iter__(self):
        """``(item_id, score)`` pairs; unknown items have score ``None``."""
        yield from zip(self.scored_item_ids, self.scores.tolist())
        for item in self.unknown_item_ids:
            yield item, None

    def to_response(self) -> dict:
        """The GetPersonalizedRanking response body (scores rounded to 7 decimals)."""
        ranking = ranking_entries(self._input, self.positions, self.scores, list(self.unknown_item_ids))
        if self._meta is not None:
            for entry, meta in zip(ranking, self.metadata):
                entry["metadata"] = meta
        return {"personalizedRanking": ranking, "recommendationId": self.recommendation_id}

    def __repr__(self) -> str:
        head = ", ".join(f"{i!r}: {s:.4g}" for i, s in list(zip(self.scored_item_ids,
                                                                 self.scores.tolist()))[:3])
        return (f"RankingResult([{head}{', ...' if len(self.positions) > 3 else ''}], "
                f"scored={len(self.positions)}, unknown={len(self.unknown_item_ids)}, "
                f"recommendation_id={self.recommendation_id!r})")
