"""Response entries of GetPersonalizedRanking: ``[{"itemId": ..., "score": ...}, ..., {"itemId": ...}]``.

``ranking_entries`` is the native ``_core.ranking_entries`` (C API dicts, interned keys) when the
extension is built, else its pure-Python twin ``ranking_entries_py``; the two are output-identical
(values, key order, exception type and message). Scores are float32 softmax probabilities,
widened to float64 and rounded to 7 decimals exactly as ``np.round(x, 7)`` does.
"""
from __future__ import annotations

import numpy as np

from ..core import native

__all__ = ["ranking_entries", "ranking_entries_py"]


def _require_array(a, name: str, dtype, dtype_name: str) -> None:
    """The checks (and messages) of ``require_array`` in ``cpp/src/bindings.cpp``, for 1-D arrays."""
    fix = f"; use np.ascontiguousarray({name}, dtype=np.{dtype_name})"
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a C-contiguous {dtype_name} NumPy array, got {type(a).__name__}{fix}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must be a C-contiguous {dtype_name} array, got dtype {a.dtype}{fix}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {dtype_name} array{fix}")
    if not a.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype{fix}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {a.ndim}-D")


def _require_str_sequence(seq, name: str, check_items: bool) -> None:
    if not isinstance(seq, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of str, got {type(seq).__name__}")
    if check_items:
        for i, s in enumerate(seq):
            if not isinstance(s, str):
                raise TypeError(f"{name}[{i}] is {type(s).__name__}, not str")


def ranking_entries_py(item_ids, positions: np.ndarray, scores: np.ndarray, unknown_ids) -> list:
    """The ``personalizedRanking`` list of a GetPersonalizedRanking response (Python twin).

    Parameters
    ----------
    item_ids : list or tuple of str
        The request's input IDs; the entries reuse these very ``str`` objects.
    positions : int64 ndarray, shape (n,), C-contiguous
        Indices into ``item_ids`` of the scored items, best first.
    scores : float32 ndarray, shape (n,), C-contiguous
        Their scores.
    unknown_ids : list or tuple of str
        IDs appended without a score.

    Returns
    -------
    list of dict
        ``[{"itemId": item_ids[p], "score": float(np.round(np.float64(s), 7))} for p, s in
        zip(positions, scores)] + [{"itemId": u} for u in unknown_ids]``.

    Raises
    ------
    TypeError
        A sequence is not a list/tuple of str, or an array is not an ndarray of the exact dtype.
    ValueError
        An array is not 1-D, C-contiguous and aligned, or the two arrays differ in length.
    IndexError
        A position is negative or not below ``len(item_ids)``.
    """
    _require_str_sequence(item_ids, "item_ids", False)
    _require_array(positions, "positions", np.int64, "int64")
    _require_array(scores, "scores", np.float32, "float32")
    if scores.shape[0] != positions.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} entries, positions has {positions.shape[0]}")
    _require_str_sequence(unknown_ids, "unknown_ids", False)
    _require_str_sequence(item_ids, "item_ids", True)
    _require_str_sequence(unknown_ids, "unknown_ids", True)
    n_items = len(item_ids)
    pos = positions.tolist()
    for j, p in enumerate(pos):
        if p < 0 or p >= n_items:
            raise IndexError(f"positions[{j}]={p} out of range for {n_items} item_ids")
    rounded = np.round(scores.astype(np.float64), 7).tolist()
    out = [{"itemId": item_ids[p], "score": s} for p, s in zip(pos, rounded)]
    out += [{"itemId": u} for u in unknown_ids]
    return out


#: ``ranking_entries_py``'s contract, native when the extension is built.
ranking_entries = native.function("ranking_entries", ranking_entries_py)
