"""Exact catalog-wide top-K with the softmax normaliser: ``topk``, ``topk_batch``, ``TopK``.

For one user ``u`` over every row ``r`` of an ``ItemTable``:
``logit_r = (u . item_r + bias_r) * scale``; ``log_normalizer = log(sum over ALL rows of
exp(logit_r))``; the result is the ``k`` best rows that are allowed and not excluded, best first
(equal logits in catalog order), with ``score_r = exp(logit_r - log_normalizer)``: the top of a
softmax over the whole catalog (masked and excluded rows still count in the normaliser).
Backends (``core.backend``): ``cpp`` (``rankcore._core.topk``, topk.h: blocked SIMD scan, float32
logits, streaming float64 log-sum-exp), ``numba`` (``core.numba_topk``, same policy) and ``numpy``
(``topk_py`` below: float64 logits, the oracle the others are checked against). Each takes the
arguments of the native function; this module converts inputs visibly before calling one.
"""
from __future__ import annotations

import importlib

import numpy as np

from . import backend as _backend
from . import native
from .api import _check_table, _threads, _users
from .quantize import dequantize
from .reference import check_users

__all__ = ["TopK", "BatchTopK", "topk", "topk_batch", "topk_py", "check_args"]


class TopK:
    """The best rows of one request, best first.

    Attributes
    ----------
    items : ndarray of int64, shape (n,)
        Table rows, ``n = min(k, allowed and not excluded rows)``.
    logits : ndarray of float32, shape (n,)
        ``(u . item + bias) * scale`` (float32; see ``topk`` for the overflow case).
    scores : ndarray of float64, shape (n,)
        ``exp(logit - log_normalizer)``: probabilities over the whole catalog (they do not sum to 1).
    log_normalizer : float
        ``log(sum over every row of the table of exp(logit))``.
    """

    __slots__ = ("items", "logits", "scores", "log_normalizer")

    def __init__(self, items, logits, scores, log_normalizer):
        self.items = items
        self.logits = logits
        self.scores = scores
        self.log_normalizer = float(log_normalizer)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def __repr__(self) -> str:
        return f"TopK(items={self.items.tolist()!r}, scores={self.scores.tolist()!r})"


class BatchTopK:
    """Top-K of a batch: (B, min(k, N)) arrays padded past ``counts[i]``; ``result[i]`` is a TopK.

    ``items`` int64 (padding -1), ``logits`` float32 (padding -inf), ``scores`` float64 (padding 0),
    ``counts`` int64 (B,), ``log_normalizer`` float64 (B,).
    """

    __slots__ = ("items", "logits", "scores", "counts", "log_normalizer")

    def __init__(self, items, logits, scores, counts, log_normalizer):
        self.items = items
        self.logits = logits
        self.scores = scores
        self.counts = counts
        self.log_normalizer = log_normalizer

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def __getitem__(self, i) -> TopK:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"request {i} out of range for a batch of {n}")
        c = int(self.counts[i])
        return TopK(self.items[i, :c], self.logits[i, :c], self.scores[i, :c], self.log_normalizer[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"BatchTopK(requests={len(self)}, k={self.items.shape[1]})"


# --------------------------------------------------------------------------- input conversion

def _k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale must be a real number, got {type(scale).__name__}")
    with np.errstate(over="ignore"):
        if not np.isfinite(np.float32(scale)):
            raise ValueError(f"scale must be finite in float32, got {scale!r}")
    return float(scale)


def _allowed(allowed, n_items: int, n_users, per_user_ok: bool):
    """None, or a C-contiguous uint8 (N,) or (B, N) mask (bool arrays are viewed, not copied)."""
    if allowed is None:
        return None
    a = np.asarray(allowed)
    if a.dtype == np.bool_:
        a = np.ascontiguousarray(a).view(np.uint8)
    elif a.dtype.kind in "iu":
        a = np.ascontiguousarray(a != 0).view(np.uint8)  # any non-zero value allows the row
    else:
        raise TypeError(f"allowed must be a bool or integer mask, got dtype {a.dtype}")
    if a.ndim == 1 and a.shape[0] == n_items:
        return a
    if per_user_ok and a.ndim == 2 and a.shape == (n_users, n_items):
        return a
    want = f"({n_items},)" + (f" or ({n_users}, {n_items})" if per_user_ok else "")
    raise ValueError(f"allowed must have shape {want}, got {a.shape}")


def _rows(rows, what: str) -> np.ndarray:
    r = np.asarray(rows)
    if r.size == 0:
        return np.zeros(0, dtype=np.int64)
    if r.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer row indices, got dtype {r.dtype}")
    if r.dtype == np.uint64 and int(r.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"excluded row {int(r.max())} out of range")
    return np.ascontiguousarray(r, dtype=np.int64)


def _exclude_batch(exclude, n_users: int):
    """(rows, offsets) from the accepted forms (see ``topk_batch``); offsets None = shared."""
    if exclude is None:
        return None, None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        r = _rows(exclude, "exclude")
        if r.shape[0] != n_users:
            raise ValueError(f"exclude has {r.shape[0]} rows but there are {n_users} users")
        keep = r >= 0  # -1 pads the per-user lists
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        return np.ascontiguousarray(r[keep]), offsets
    if isinstance(exclude, (list, tuple)) and any(np.ndim(e) != 0 for e in exclude):
        if len(exclude) != n_users:
            raise ValueError(f"per-user exclude lists: got {len(exclude)} lists for {n_users} users")
        lists = [_rows(e, f"exclude[{i}]").reshape(-1) for i, e in enumerate(exclude)]
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum([len(x) for x in lists], out=offsets[1:])
        return np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64), offsets
    r = _rows(exclude, "exclude")
    if r.ndim != 1:
        raise ValueError(f"exclude must be 1-D (shared), 2-D (B, E) with -1 padding, or per-user lists, "
                         f"got shape {r.shape}")
    return r, None


def _impl(backend):
    name = _backend.resolve_name(backend)
    if name == "cpp":
        return native.core.topk
    if name == "numba":  # imported on first use: compiling it costs seconds
        return importlib.import_module("rankcore.core.numba_topk").topk
    return topk_py


# --------------------------------------------------------------------------- public functions

def topk(user, table, k, *, allowed=None, exclude=None, scale=1.0, threads=None, backend=None) -> TopK:
    """The ``k`` best rows of the whole table for one user, with softmax scores over all rows.

    Parameters
    ----------
    user : array_like, shape (d,)
    table : ItemTable
    k : int
        At most this many rows come back (fewer when fewer are allowed and not excluded).
    allowed : array_like of bool or int, shape (N,), optional
        Rows whose entry is 0/False are never returned; they still count in the normaliser.
    exclude : array_like of int, optional
        Rows never returned (e.g. the query item of related items); they count in the normaliser.
        Each must be in [0, N) (``IndexError`` otherwise).
    scale : float
        Multiplies every logit: ``logit = (u . item + bias) * scale``.
    threads : int, optional
        Threads splitting the table between them (default: all cores; a small table uses one).
    backend : {"cpp", "numba", "numpy"}, optional

    Returns
    -------
    TopK
        ``scores`` are float64 and always finite. ``logits`` are float32; when a float32 logit
        overflows, the request is recomputed in float64 and a logit beyond float32 range is
        reported as +-inf (its score stays exact).
    """
    _check_table(table)
    u = _users(user, table, 1)
    kk = _k(k)
    a = _allowed(allowed, table.n_items, 1, False)
    ex = None if exclude is None else _rows(exclude, "exclude").reshape(-1)
    rows, logits, scores, counts, lognorm = _impl(backend)(
        u, table._data, table._bias, table._dim, kk, a, ex, None, _scale(scale), _threads(threads),
        row_scale=table._scale)
    c = int(counts[0])
    return TopK(rows[0, :c], logits[0, :c], scores[0, :c], lognorm[0])


def topk_batch(users, table, k, *, allowed=None, exclude=None, scale=1.0, threads=None,
               backend=None) -> BatchTopK:
    """``topk`` for many users in one call (blocked matrix products, several threads, no GIL).

    ``allowed``: one (N,) mask for every user, or (B, N), one row per user.
    ``exclude``: one 1-D list of rows for every user; or per-user lists (a list/tuple of B
    sequences); or a (B, E) integer array whose ``-1`` entries are padding.
    Other arguments as in :func:`topk`. Row ``i`` of the result equals ``topk`` of user ``i``.
    """
    _check_table(table)
    u = _users(users, table, 2)
    kk = _k(k)
    a = _allowed(allowed, table.n_items, u.shape[0], True)
    ex, ex_off = _exclude_batch(exclude, u.shape[0])
    rows, logits, scores, counts, lognorm = _impl(backend)(
        u, table._data, table._bias, table._dim, kk, a, ex, ex_off, _scale(scale), _threads(threads),
        row_scale=table._scale)
    return BatchTopK(rows, logits, scores, counts, lognorm)


# --------------------------------------------------------------------------- numpy backend

def check_args(users, table, bias, dim, k, allowed, exclude, exclude_offsets, scale, row_scale=None):
    """The native function's checks, for the Python backends (ValueError / IndexError)."""
    n_rows = table.shape[0]
    if (table.dtype == np.int8) != (row_scale is not None):
        raise ValueError("row_scale is required for an int8 table and only for it")
    if dim < 1 or table.shape[1] < dim or users.shape[1] != dim:
        raise ValueError(f"users {users.shape} and table {table.shape} do not match dim={dim}")
    if n_rows < 1:
        raise ValueError("table has no rows")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not np.isfinite(np.float32(scale)):
        raise ValueError("scale must be a finite float32 value")
    if bias is not None and bias.shape != (n_rows,):
        raise ValueError(f"bias must have shape ({n_rows},), got {bias.shape}")
    if allowed is not None and allowed.shape not in ((n_rows,), (users.shape[0], n_rows)):
        raise ValueError(f"allowed must have shape ({n_rows},) or ({users.shape[0]}, {n_rows})")
    check_users(users)
    if exclude is None:
        if exclude_offsets is not None:
            raise ValueError("exclude_offsets given without exclude")
        return
    if exclude_offsets is not None:
        o = exclude_offsets
        if (o.shape != (users.shape[0] + 1,) or o[0] != 0 or o[-1] != exclude.shape[0]
                or np.any(o[1:] < o[:-1])):
            raise ValueError("exclude_offsets must be non-decreasing, (B + 1,), from 0 to len(exclude)")
    bad = (exclude < 0) | (exclude >= n_rows)
    if bad.any():
        raise IndexError(f"excluded row {int(exclude[np.flatnonzero(bad)[0]])} out of range for an item "
                         f"table of {n_rows} rows")


def _eligible(b, lo, hi, allowed, exclude, exclude_offsets):
    """Boolean mask of rows [lo, hi) that user b may get back."""
    ok = np.ones(hi - lo, dtype=bool)
    if allowed is not None:
        ok &= (allowed[b] if allowed.ndim == 2 else allowed)[lo:hi] != 0
    if exclude is not None:
        ex = exclude if exclude_offsets is None else exclude[exclude_offsets[b]:exclude_offsets[b + 1]]
        ex = ex[(ex >= lo) & (ex < hi)]
        ok[ex - lo] = False
    return ok


def topk_py(users, table, bias, dim, k, allowed, exclude, exclude_offsets, scale, threads=0, row_scale=None):
    """NumPy backend (same arguments and results as the native ``topk``), logits in float64.

    The table is read in blocks of rows (so memory stays bounded); per block, every user's float64
    logits update a running log-sum-exp and a candidate list cut to the best ``k``.
    """
    check_args(users, table, bias, dim, k, allowed, exclude, exclude_offsets, scale, row_scale)
    n_users, n_rows = users.shape[0], table.shape[0]
    kk = min(k, n_rows)
    u64 = users.astype(np.float64)
    block = max(1, min(n_rows, (1 << 22) // max(1, n_users)))
    m = np.full(n_users, -np.inf)
    s = np.zeros(n_users)
    cand_l = [np.zeros(0)] * n_users
    cand_r = [np.zeros(0, dtype=np.int64)] * n_users
    for lo in range(0, n_rows, block):
        hi = min(n_rows, lo + block)
        part = table[lo:hi, :dim] if table.dtype == np.float32 else dequantize(
            table[lo:hi], None if row_scale is None else row_scale[lo:hi], dim=dim, out_dtype=np.float64)
        lg = part.astype(np.float64) @ u64.T  # (rows, users)
        if bias is not None:
            lg += bias[lo:hi, None].astype(np.float64)
        lg *= float(np.float32(scale))
        bm = lg.max(axis=0)
        new_m = np.maximum(m, bm)
        s = s * np.exp(m - new_m) + np.exp(lg - new_m).sum(axis=0)
        m = new_m
        for b in range(n_users):
            ok = np.flatnonzero(_eligible(b, lo, hi, allowed, exclude, exclude_offsets))
            ls = np.concatenate([cand_l[b], lg[ok, b]])
            rs = np.concatenate([cand_r[b], ok + lo])
            order = np.lexsort((rs, -ls))[:kk]  # descending logit, then ascending row
            cand_l[b], cand_r[b] = ls[order], rs[order]
    lognorm = m + np.log(s)
    rows = np.full((n_users, kk), -1, dtype=np.int64)
    logits = np.full((n_users, kk), -np.inf, dtype=np.float32)
    scores = np.zeros((n_users, kk))
    counts = np.zeros(n_users, dtype=np.int64)
    for b in range(n_users):
        c = cand_r[b].shape[0]
        counts[b] = c
        rows[b, :c] = cand_r[b]
        with np.errstate(over="ignore"):
            logits[b, :c] = cand_l[b].astype(np.float32)
        scores[b, :c] = np.exp(cand_l[b] - lognorm[b])
    return rows, logits, scores, counts, lognorm
