"""The candidate list of a request: looked-up item rows de-duplicated, unknown IDs set aside, filtered.

A request's items are ranked once each (first occurrence kept); IDs the model does not know are
returned after the scored ones, in input order; a filter keeps or drops known items by row and
decides for all unknown items at once (row -1). ``dedupe`` serves one request, ``dedupe_many``
a chunk of concatenated requests; both use ``unknown_ids`` and ``first_occurrences``. The rules
are those of docs/personalize.md.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import native
from ..errors import InvalidInputException, PersonalizeError

__all__ = ["without_failed", "all_known_distinct", "all_known_distinct_py", "unknown_ids", "first_occurrences",
           "dedupe", "dedupe_many", "apply_filter"]

_I64 = np.dtype(np.int64)


def all_known_distinct_py(rows: np.ndarray) -> bool:
    """Python twin of ``_core.all_known_distinct``: no row is -1 and none repeats."""
    if (type(rows) is not np.ndarray or rows.dtype != _I64 or rows.ndim != 1
            or not (rows.flags.c_contiguous and rows.flags.aligned)):
        raise TypeError("all_known_distinct takes one C-contiguous int64 (n,) array")
    if rows.shape[0] == 0:
        return True
    if rows.min() < 0:
        return False
    srt = np.sort(rows)
    return not bool((srt[1:] == srt[:-1]).any())


#: One-pass check that every looked-up row is known and distinct (int64 rows only).
all_known_distinct = native.function("all_known_distinct", all_known_distinct_py)


def unknown_ids(item_ids: Sequence, positions: Sequence[int]) -> list:
    """The distinct IDs at ``positions`` of ``item_ids``, first occurrence first.

    Raises ``TypeError`` naming the position of the first ID that is not a ``str``.
    """
    seen: dict = {}
    for p in positions:
        s = item_ids[p]
        if not isinstance(s, str):
            raise TypeError(f"item IDs must be str, got {type(s).__name__} at position {p}")
        seen.setdefault(s, None)
    return list(seen)


def first_occurrences(rows: np.ndarray) -> np.ndarray | None:
    """Ascending indices of the first occurrence of each row, or None when no row repeats."""
    if rows.shape[0] < 2:
        return None
    srt = np.sort(rows)
    if not (srt[1:] == srt[:-1]).any():
        return None
    _, first = np.unique(rows, return_index=True)
    first.sort()
    return first


def dedupe(item_ids: Sequence, rows: np.ndarray) -> tuple:
    """``(positions | None, known rows, unknown ids)`` of one request, duplicates dropped.

    ``rows`` are ``item_ids``' model rows (-1: unknown). ``positions`` index ``item_ids`` and is
    None when every item is known and distinct (``rows`` used as is).
    """
    if all_known_distinct(rows):
        return None, rows, []  # the common case, in one pass
    unknown: list = []
    pos = None
    krows = rows
    if rows.shape[0] and rows.min() < 0:
        known = rows >= 0
        pos = np.flatnonzero(known)
        krows = rows[pos]
        unknown = unknown_ids(item_ids, np.flatnonzero(~known).tolist())
    first = first_occurrences(krows)
    if first is not None:
        pos = first if pos is None else pos[first]
        krows = krows[first]
    return pos, krows, unknown


def dedupe_many(flat_ids: Sequence, rows: np.ndarray, bounds: np.ndarray, line_of: np.ndarray) -> tuple:
    """``dedupe`` over concatenated requests: ``(keep, unknown)``.

    Request i owns ``flat_ids[bounds[i]:bounds[i+1]]``; ``line_of`` maps each flat position to
    its request. ``keep`` is a bool mask over the flat positions (None: keep all, every item known
    and distinct) and ``unknown`` maps a request to its unknown IDs (absent: none).
    """
    known = rows >= 0
    keep = None if known.all() else known
    unknown: dict = {}
    if keep is not None:
        where = np.flatnonzero(~known)
        lines = line_of[where]
        for i in np.unique(lines).tolist():
            unknown[i] = unknown_ids(flat_ids, where[lines == i].tolist())
    # (request, row) pairs that occur twice; only their requests are re-examined
    kidx = None if keep is None else np.flatnonzero(known)
    kr = rows if kidx is None else rows[kidx]
    if kr.shape[0] > 1:
        n_items = int(kr.max()) + 1
        keys = (line_of if kidx is None else line_of[kidx]) * n_items + kr
        keys.sort()
        dup = keys[1:] == keys[:-1]
        if dup.any():
            if keep is None:
                keep = np.ones(rows.shape[0], dtype=bool)
            for i in np.unique(keys[1:][dup] // n_items).tolist():
                a, b = int(bounds[i]), int(bounds[i + 1])
                kp = np.flatnonzero(keep[a:b])
                seg = np.zeros(b - a, dtype=bool)
                first = first_occurrences(rows[a:b][kp])
                seg[kp if first is None else kp[first]] = True
                keep[a:b] = seg
    return keep, unknown


def apply_filter(evaluate, data, user_id, pos, krows: np.ndarray, unknown: list,
                 filter_values) -> tuple:
    """``(positions | None, known rows, unknown ids)`` that the filter ``evaluate`` keeps.

    Items the model does not know have no metadata and no interactions (row -1): they match no
    condition, so an INCLUDE filter removes them and an EXCLUDE filter keeps them (still last,
    unscored). The plan is asked once about row -1 on behalf of all of them. A ``ValueError``
    of the plan (a missing or malformed filter value) becomes ``InvalidInputException``.
    """
    rows = np.append(krows, -1) if unknown else krows
    try:
        keep = evaluate(data, user_id, rows, filter_values or {})
    except PersonalizeError:
        raise
    except ValueError as e:
        raise InvalidInputException(str(e)) from None
    if type(keep) is not np.ndarray or keep.dtype != np.bool_:
        keep = np.asarray(keep, dtype=bool)
    if keep.shape != rows.shape:
        raise ValueError(f"filter returned a mask of shape {keep.shape} for {rows.shape[0]} items")
    if unknown:
        if not keep[-1]:
            unknown = []
        keep = keep[:-1]
    idx = keep.nonzero()[0]  # keep is 1-D: np.flatnonzero's ravel and dispatch cost more than it
    if idx.shape[0] == krows.shape[0]:  # everything kept
        return pos, krows, unknown
    return (idx if pos is None else pos[idx]), krows[idx], unknown


def without_failed(keep, bounds: np.ndarray, unknown: dict, errors: dict) -> np.ndarray | None:
    """Flat positions of the kept items outside failed requests (None: all of them); the failed
    requests' unknown IDs are dropped from ``unknown``."""
    if errors:
        if keep is None:
            keep = np.ones(int(bounds[-1]), dtype=bool)
        for i in errors:
            keep[bounds[i]:bounds[i + 1]] = False
            unknown.pop(i, None)
    return np.flatnonzero(keep) if keep is not None else None
