"""NumPy reference backend: the oracle the other backends are tested against.

Same entry points and numerical policy as the C++ kernel (``rankcore._core``) and the numba
backend (``rankcore._numba``):

``score(users, table, bias, dim, candidates, offsets, padded, threads) -> (scores, logits)``
``rank(users, table, bias, dim, candidates, offsets, padded, k, threads)
    -> (positions, items, scores, logits, out_offsets)``

Numerical policy (identical on every backend)
---------------------------------------------
* ``logit_i = dot_f32(table[c_i, :dim], user) + bias[c_i]`` (float32 accumulation).
* All logits finite: ``m = max``, ``e_i = exp(l_i - m)`` in float32, ``s = sum(e)`` in float64,
  ``score_i = float32(e_i / s)``.
* Any logit non-finite (float32 overflow, e.g. 1e30 * 1e30): the request is recomputed in float64;
  NaN/inf there means the data holds NaN/inf and raises ``ValueError``; else a float64 softmax.
* Order: descending score, equal scores keep input order; ``k`` keeps the first k of that order.
* ``padded``: ``-1`` marks padding, which is neither scored nor ranked (score 0, logit -inf in
  ``score``).
* Compressed tables (float16, uint16 = bfloat16 bits, int8 with ``row_scale``; see
  ``core.quantize``): this reference dequantises the candidate rows and takes their dot products
  in float64 (logits rounded to float32 once), the oracle the compressed kernels are held to.
"""
from __future__ import annotations

import numpy as np

from .quantize import dequantize

__all__ = ["score", "rank", "check_candidates", "check_offsets", "check_users", "valid_counts"]

#: Whether ``score``/``rank`` reject non-finite user vectors themselves (else the caller does).
CHECKS_USERS = False


NONFINITE_USER = "user vector contains NaN or inf (or values beyond float32 range)"


def check_users(users: np.ndarray) -> None:
    """ValueError unless every user vector entry is finite (one float64 sum)."""
    if not np.isfinite(users.sum(dtype=np.float64)):
        raise ValueError(NONFINITE_USER)


def check_offsets(offsets, n_candidates: int, n_users: int) -> np.ndarray:
    """Validate CSR offsets (int64, (B+1,), starts at 0, non-decreasing, ends at len)."""
    if offsets is None:
        if n_users != 1:
            raise ValueError(f"offsets=None means one request, but users has {n_users} rows")
        return np.array([0, n_candidates], dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] != n_users + 1:
        raise ValueError(f"offsets must have shape ({n_users + 1},), got {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != n_candidates:
        raise ValueError(f"offsets must start at 0 and end at len(candidates)={n_candidates}")
    if n_users and np.any(offsets[1:] < offsets[:-1]):
        raise ValueError("offsets must be non-decreasing")
    return offsets


def check_candidates(candidates: np.ndarray, offsets: np.ndarray, n_items: int, padded: bool) -> None:
    """Raise ``IndexError`` naming the first candidate outside [0, n_items) (-1 allowed if padded)."""
    if candidates.size == 0:
        return
    low = -1 if padded else 0
    bad = (candidates < low) | (candidates >= n_items)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        b = int(np.searchsorted(offsets, j, side="right") - 1)
        raise IndexError(
            f"candidate {int(candidates[j])} out of range for an item table of {n_items} rows "
            f"(request {b}, position {j - int(offsets[b])})"
        )


def valid_counts(candidates: np.ndarray, offsets: np.ndarray, padded: bool) -> np.ndarray:
    """Number of non-padding candidates per request."""
    lengths = np.diff(offsets)
    if not padded or candidates.size == 0:
        return lengths
    csum = np.concatenate(([0], np.cumsum(candidates >= 0)))
    return csum[offsets[1:]] - csum[offsets[:-1]]


def _softmax(users_row, table, bias, dim, rows, b, row_scale=None):
    with np.errstate(over="ignore", invalid="ignore"):
        return _softmax_unchecked(users_row, table, bias, dim, rows, b, row_scale)


def _softmax_unchecked(users_row, table, bias, dim, rows, b, row_scale=None):
    if table.dtype == np.float32:
        emb = table[rows, :dim]
        # a row-wise reduction, not a matmul: BLAS may round the same row differently at different
        # positions, and a permutation of the candidates must not change any logit
        logits = np.multiply(emb, users_row).sum(axis=1, dtype=np.float32)
    else:  # compressed: dequantise and take the dot in float64
        emb = dequantize(table, row_scale, rows, dim, np.float64)
        logits = np.multiply(emb, users_row.astype(np.float64)).sum(axis=1)
        if bias is not None:
            logits = logits + bias[rows].astype(np.float64)
        logits = logits.astype(np.float32)
    if bias is not None and table.dtype == np.float32:
        logits = logits + bias[rows]
    logits = logits.astype(np.float32, copy=False)
    if logits.size == 0:
        return logits, logits.copy()
    if np.isfinite(logits).all():
        e = np.exp(logits - logits.max())
        scores = (e / e.sum(dtype=np.float64)).astype(np.float32)
        return scores, logits
    l64 = emb.astype(np.float64) @ users_row.astype(np.float64)
    if bias is not None:
        l64 = l64 + bias[rows].astype(np.float64)
    bad = ~np.isfinite(l64)
    if bad.any():
        row = int(rows[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"non-finite logit for item row {row} (request {b}): "
            "the item table, bias or user vector contains NaN or inf"
        )
    e = np.exp(l64 - l64.max())
    return (e / e.sum()).astype(np.float32), l64.astype(np.float32)


def _requests(users, table, bias, dim, candidates, offsets, padded, row_scale=None):
    for b in range(offsets.shape[0] - 1):
        seg = candidates[offsets[b]:offsets[b + 1]]
        cols = np.flatnonzero(seg >= 0) if padded else np.arange(seg.shape[0])
        scores, logits = _softmax(users[b], table, bias, dim, seg[cols], b, row_scale)
        yield b, cols, seg[cols], scores, logits


def _check_scale(table, row_scale):
    if (table.dtype == np.int8) != (row_scale is not None):
        raise ValueError("row_scale is required for an int8 table and only for it")


def score(users, table, bias, dim, candidates, offsets, padded, threads=1, row_scale=None):
    """Scores and logits in input order (padding: score 0, logit -inf)."""
    _check_scale(table, row_scale)
    offsets = check_offsets(offsets, candidates.shape[0], users.shape[0])
    check_candidates(candidates, offsets, table.shape[0], padded)
    scores = np.zeros(candidates.shape[0], dtype=np.float32)
    logits = np.full(candidates.shape[0], -np.inf, dtype=np.float32)
    for b, cols, _, s, lg in _requests(users, table, bias, dim, candidates, offsets, padded, row_scale):
        scores[offsets[b] + cols] = s
        logits[offsets[b] + cols] = lg
    return scores, logits


def rank(users, table, bias, dim, candidates, offsets, padded, k=-1, threads=1, row_scale=None):
    """Ranked positions, items, scores and logits, flat with per-request ``out_offsets``."""
    _check_scale(table, row_scale)
    offsets = check_offsets(offsets, candidates.shape[0], users.shape[0])
    check_candidates(candidates, offsets, table.shape[0], padded)
    counts = valid_counts(candidates, offsets, padded)
    if k >= 0:
        counts = np.minimum(counts, k)
    out_offsets = np.zeros(offsets.shape[0], dtype=np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    total = int(out_offsets[-1])
    positions = np.empty(total, dtype=np.int64)
    items = np.empty(total, dtype=np.int64)
    scores = np.empty(total, dtype=np.float32)
    logits = np.empty(total, dtype=np.float32)
    for b, cols, rows, s, lg in _requests(users, table, bias, dim, candidates, offsets, padded, row_scale):
        order = np.argsort(-s, kind="stable")
        lo, hi = out_offsets[b], out_offsets[b + 1]
        order = order[: hi - lo]
        positions[lo:hi] = cols[order]
        items[lo:hi] = rows[order]
        scores[lo:hi] = s[order]
        logits[lo:hi] = lg[order]
    return positions, items, scores, logits, out_offsets
