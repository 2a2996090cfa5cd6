"""Public scoring API: ``ItemTable``, ``rank``, ``rank_batch``, ``score``, ``score_batch``.

This layer does every conversion visibly (``np.ascontiguousarray`` to float32/int64, once) and
the checks that need Python types; the backends receive exactly-typed, C-contiguous arrays and
validate sizes and candidate ranges themselves before touching memory. A single call is a batch of
one: every function ends in the same backend entry point (``score`` or ``rank``).
"""
from __future__ import annotations

import os

import numpy as np

from . import backend as _backend
from . import native, reference
from .results import BatchRanking, BatchScores, Ranking, Scores
from .table import ItemTable

__all__ = [
    "ItemTable",
    "Ranking",
    "BatchRanking",
    "Scores",
    "BatchScores",
    "rank",
    "rank_batch",
    "score",
    "score_batch",
]


def _check_table(table) -> ItemTable:
    if not isinstance(table, ItemTable):
        raise TypeError(f"table must be a rankcore.ItemTable, got {type(table).__name__}")
    return table


# The single-call fast paths (see rank and score): only with the native backend, when RANKCORE_BACKEND is
# unset and the environment is CPython's os.environ (whose bytes mapping is read directly).
_rank_one = native.function("rank_one")
_score_one = native.function("score_one")
_ENV_DATA = _backend._ENV_DATA
_ENV_KEY = _backend._ENV_KEY
if _ENV_DATA is None:  # pragma: no cover - not CPython's os.environ
    _rank_one = _score_one = None

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


def _users(users, table: ItemTable, ndim: int) -> np.ndarray:
    """(B, d) C-contiguous float32 view or copy of the user vector(s); shapes checked.

    Finiteness is checked by the caller (``reference.check_users``) unless the backend checks it
    itself (its ``CHECKS_USERS``).
    """
    u = users
    if not (type(u) is np.ndarray and u.dtype is _F32 and u.flags.c_contiguous):
        u = np.asarray(u)
        if u.dtype.kind not in "fiu":
            raise TypeError(f"user vectors must be real numbers, got dtype {u.dtype}")
        if u.dtype != _F32 or not u.flags.c_contiguous:
            with np.errstate(over="ignore"):
                u = np.ascontiguousarray(u, dtype=np.float32)
    if u.ndim != ndim or u.shape[-1] != table._dim:
        want = "(d,)" if ndim == 1 else "(B, d)"
        raise ValueError(f"user vectors must have shape {want} with d={table._dim}, got {u.shape}")
    return u.reshape(-1, table._dim) if ndim == 1 else u


def _candidates(candidates, ndim=None) -> np.ndarray:
    if (type(candidates) is np.ndarray and candidates.dtype is _I64 and candidates.flags.c_contiguous
            and (ndim is None or candidates.ndim == ndim)):
        return candidates
    c = np.asarray(candidates)
    if c.dtype.kind not in "iu":
        if c.size == 0 and c.dtype.kind in "fO":
            c = c.astype(np.int64)
        else:
            raise TypeError(f"candidates must be integer row indices, got dtype {c.dtype}")
    if c.dtype == np.uint64 and c.size and int(c.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"candidate {int(c.max())} out of range")
    if ndim is not None and c.ndim != ndim:
        raise ValueError(f"candidates must be {ndim}-D, got shape {c.shape}")
    return np.ascontiguousarray(c, dtype=np.int64)


def _k(k) -> int:
    if k is None:
        return -1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int or None, got {type(k).__name__}")
    if not 0 <= k <= _I64_MAX:
        raise ValueError(f"k must be between 0 and 2**63 - 1, got {k}")
    return int(k)


_I64_MAX = np.iinfo(np.int64).max
#: Upper bound of ``threads``: the kernels are CPU-bound, so more threads than usable cores only
#: cost memory and start-up time.
MAX_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _threads(threads) -> int:
    """0 (all cores) for None, else ``threads`` clamped to ``MAX_THREADS``."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return min(int(threads), MAX_THREADS)


def _private(arr: np.ndarray, impl) -> np.ndarray:
    """``arr`` itself for the native backend, else a private copy.

    The native kernel copies offsets and re-checks each candidate as it copies it; the numba and
    NumPy backends read the arrays they are given (numba with the GIL released), so they get a
    copy: another thread changing the caller's array mid-call cannot reach the kernel.
    """
    return arr if impl is native.core else arr.copy()


def _batch_candidates(candidates, offsets, n_users: int):
    """(flat int64 candidates, int64 offsets, padded) from the 2-D or CSR form."""
    c = _candidates(candidates)
    if c.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets must be None when candidates is 2-D (B, K) with -1 padding")
        if c.shape[0] != n_users:
            raise ValueError(f"candidates has {c.shape[0]} rows but users has {n_users}")
        flat = c.reshape(-1)
        return flat, np.arange(n_users + 1, dtype=np.int64) * c.shape[1], True, c.shape
    if c.ndim != 1:
        raise ValueError(f"candidates must be 2-D (B, K) or flat (total,) with offsets, got shape {c.shape}")
    if offsets is None:
        raise ValueError("flat candidates need CSR offsets of shape (B+1,)")
    o = np.asarray(offsets)
    if o.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {o.dtype}")
    o = np.ascontiguousarray(o, dtype=np.int64)
    if o.ndim != 1 or o.shape[0] != n_users + 1:
        raise ValueError(f"offsets must have shape ({n_users + 1},), got {o.shape}")
    return c, o, False, None


# --------------------------------------------------------------------------- public functions

def rank(user, table: ItemTable, candidates, *, k=None, backend=None) -> Ranking:
    """Rank candidate items for one user, best first.

    Parameters
    ----------
    user : array_like, shape (d,)
        User vector.
    table : ItemTable
    candidates : array_like of int, shape (K,)
        Item rows to rank; each in [0, N).
    k : int, optional
        Keep only the best ``k`` (their scores stay probabilities over all K).
    backend : {"cpp", "numba", "numpy"}, optional

    Returns
    -------
    Ranking
    """
    if (_rank_one is not None and type(table) is ItemTable
            and (_ENV_KEY not in _ENV_DATA if backend is None else backend == "cpp")):
        # Native fast path: inputs already exact (float32 user, int64 candidates) are ranked in
        # one native call; anything else returns None and takes the general path below.
        r = _rank_one(user, table._data, table._bias, table._dim, candidates, k, Ranking, table._scale)
        if r is not None:
            return r
    if type(table) is not ItemTable:
        _check_table(table)
    u = _users(user, table, 1)
    c = _candidates(candidates, 1)
    impl = _backend.get_backend(backend)
    kk = _k(k)
    if impl is native.core and _rank_one is not None:  # converted: now the one-call path takes it
        r = _rank_one(u[0], table._data, table._bias, table._dim, c, None if kk < 0 else kk, Ranking, table._scale)
        if r is not None:
            return r
    if not impl.CHECKS_USERS:
        reference.check_users(u)
    c = _private(c, impl)
    p, it, s, lg, _ = impl.rank(u, table._data, table._bias, table._dim, c, None, False, kk, 1,
                                row_scale=table._scale)
    return Ranking(p, it, s, lg)


def score(user, table: ItemTable, candidates, *, backend=None) -> Scores:
    """Softmax probabilities and logits of one user's candidates, in input order."""
    if (_score_one is not None and type(table) is ItemTable
            and (_ENV_KEY not in _ENV_DATA if backend is None else backend == "cpp")):
        r = _score_one(user, table._data, table._bias, table._dim, candidates, Scores, table._scale)
        if r is not None:
            return r
    _check_table(table)
    u = _users(user, table, 1)
    c = _candidates(candidates, 1)
    impl = _backend.get_backend(backend)
    if impl is native.core and _score_one is not None:  # converted: now the one-call path takes it
        r = _score_one(u[0], table._data, table._bias, table._dim, c, Scores, table._scale)
        if r is not None:
            return r
    if not impl.CHECKS_USERS:
        reference.check_users(u)
    s, lg = impl.score(u, table._data, table._bias, table._dim, _private(c, impl), None, False, 1,
                       row_scale=table._scale)
    return Scores(s, lg)


def rank_batch(users, table: ItemTable, candidates, offsets=None, *, k=None, backend=None,
               threads=None) -> BatchRanking:
    """Rank many requests in one call, on several threads with the GIL released.

    Parameters
    ----------
    users : array_like, shape (B, d)
    table : ItemTable
    candidates : array_like of int
        Either (B, K) with ``-1`` as padding, or flat (total,) with CSR ``offsets``.
    offsets : array_like of int, shape (B+1,), optional
        Request i's candidates are ``candidates[offsets[i]:offsets[i+1]]``.
    k, backend : as in :func:`rank`
    threads : int, optional
        Worker threads (default: all cores).

    Returns
    -------
    BatchRanking
        ``positions`` index the request's own list (columns in the 2-D form).
    """
    _check_table(table)
    u = _users(users, table, 2)
    c, o, padded, _ = _batch_candidates(candidates, offsets, u.shape[0])
    impl = _backend.get_backend(backend)
    if not impl.CHECKS_USERS:
        reference.check_users(u)
    p, it, s, lg, oo = impl.rank(u, table._data, table._bias, table._dim, _private(c, impl),
                                 _private(o, impl), padded, _k(k), _threads(threads), row_scale=table._scale)
    return BatchRanking(p, it, s, lg, oo)


def score_batch(users, table: ItemTable, candidates, offsets=None, *, backend=None,
                threads=None) -> BatchScores:
    """Probabilities and logits of many requests in input order.

    For (B, K) padded input the results are (B, K) arrays where padding has score 0 and logit
    ``-inf``; for the CSR form they are flat, with the same ``offsets``.
    """
    _check_table(table)
    u = _users(users, table, 2)
    c, o, padded, shape = _batch_candidates(candidates, offsets, u.shape[0])
    impl = _backend.get_backend(backend)
    if not impl.CHECKS_USERS:
        reference.check_users(u)
    s, lg = impl.score(u, table._data, table._bias, table._dim, _private(c, impl), _private(o, impl),
                       padded, _threads(threads), row_scale=table._scale)
    if shape is not None:
        s = s.reshape(shape)
        lg = lg.reshape(shape)
    return BatchScores(s, lg, o)
