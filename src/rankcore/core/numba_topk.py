"""numba backend of the catalog-wide top-K (``core.topk``): same arguments and results as the native
``topk``, same numerical policy as topk.h.

Float32 logits ``(dot_f32 + bias) * scale`` (the dot product of ``numba_backend``), a running
log-sum-exp per user (float32 max, float32 ``exp(l - m)`` summed in float64), a bounded heap per
user (equal logits: lower row first), and a float64 recompute of a user whose float32 logits
overflowed. The table is read in blocks of ``BLOCK`` rows, each used for a tile of ``USER_TILE``
users while it is in cache; ``prange`` runs over (user chunk, row range) cells whose partial
heaps and (max, sum) pairs are merged afterwards with NumPy. Imported lazily (first use).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .numba_backend import _dot_f32
from .quantize import dequantize
from .topk import check_args

__all__ = ["topk"]

BLOCK = 64  # rows per block: 64 rows of d=64 are 16 KiB, kept in L1 for a tile of users
USER_TILE = 8  # users scoring one block before the next block is read
USER_CHUNK = 48  # users per cell of the parallel grid
MIN_RANGE_FLOATS = 1 << 18  # a row range is worth a thread from this many floats on

_NO_ROW = np.iinfo(np.int64).max


@njit(cache=True, nogil=True)
def _worse(l1, r1, l2, r2):
    return l1 < l2 or (l1 == l2 and r1 > r2)


@njit(cache=True, nogil=True)
def _offer(hl, hr, size, k, lv, row):
    """Offer (lv, row) to the heap hl/hr[:size] whose root is the worst entry; returns the new size."""
    if size < k:
        i = size
        while i > 0:
            p = (i - 1) // 2
            if not _worse(lv, row, hl[p], hr[p]):
                break
            hl[i] = hl[p]
            hr[i] = hr[p]
            i = p
        hl[i] = lv
        hr[i] = row
        return size + 1
    if not _worse(hl[0], hr[0], lv, row):
        return size
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and _worse(hl[c + 1], hr[c + 1], hl[c], hr[c]):
            c += 1
        if not _worse(hl[c], hr[c], lv, row):
            break
        hl[i] = hl[c]
        hr[i] = hr[c]
        i = c
    hl[i] = lv
    hr[i] = row
    return size


@njit(cache=True, nogil=True)
def _eligible(u, row, allowed, allowed_mode, ex_rows, ex_off):
    if allowed_mode == 1 and allowed[0, row] == 0:
        return False
    if allowed_mode == 2 and allowed[u, row] == 0:
        return False
    b = 0 if ex_off.shape[0] == 2 else u
    lo, hi = ex_off[b], ex_off[b + 1]
    if lo == hi:
        return True
    j = lo + np.searchsorted(ex_rows[lo:hi], row)
    return not (j < hi and ex_rows[j] == row)


@njit(cache=True, nogil=True, locals={"x": numba.float32, "bm": numba.float32, "mm": numba.float32,
                                      "thr": numba.float32, "lv": numba.float32})
def _scan(users, u0, u1, table, bias, has_bias, dim, scale, k, allowed, allowed_mode, ex_rows, ex_off,
          r0, r1, rng, n_ranges, hl, hr, size, m, s, bad):
    """Scan rows [r0, r1) for users [u0, u1), updating the partial state of slot u * n_ranges + rng."""
    lbuf = np.empty((USER_TILE, BLOCK), dtype=np.float32)
    for start in range(r0, r1, BLOCK):
        n = min(BLOCK, r1 - start)
        for t0 in range(u0, u1, USER_TILE):
            t1 = min(u1, t0 + USER_TILE)
            for u in range(t0, t1):
                for i in range(n):
                    d = _dot_f32(table, start + i, users, u, dim)
                    lbuf[u - t0, i] = ((d + bias[start + i]) if has_bias else d) * scale
            for u in range(t0, t1):
                slot = u * n_ranges + rng
                if bad[slot]:
                    continue
                bm = -np.inf
                for i in range(n):
                    x = lbuf[u - t0, i]
                    if not math.isfinite(x):
                        bad[slot] = True
                        break
                    if x > bm:
                        bm = x
                if bad[slot]:
                    continue
                if bm > m[slot]:
                    s[slot] *= math.exp(np.float64(m[slot]) - np.float64(bm))
                    m[slot] = bm
                mm = m[slot]
                acc = 0.0
                for i in range(n):
                    acc += math.exp(lbuf[u - t0, i] - mm)  # float32 exp, float64 sum
                s[slot] += acc
                sz = size[slot]
                thr = hl[slot, 0] if sz == k else -np.inf
                for i in range(n):
                    lv = lbuf[u - t0, i]
                    if lv > thr and _eligible(u, start + i, allowed, allowed_mode, ex_rows, ex_off):
                        sz = _offer(hl[slot], hr[slot], sz, k, lv, start + i)
                        if sz == k:
                            thr = hl[slot, 0]
                size[slot] = sz


@njit(cache=True, parallel=True, nogil=True)
def _scan_parallel(users, table, bias, has_bias, dim, scale, k, allowed, allowed_mode, ex_rows, ex_off,
                   chunk, n_chunks, n_ranges, rows_per_range, hl, hr, size, m, s, bad):
    n_users, n_rows = users.shape[0], table.shape[0]
    for cell in prange(n_chunks * n_ranges):
        c, rng = cell // n_ranges, cell % n_ranges
        r0 = rng * rows_per_range
        _scan(users, c * chunk, min(n_users, (c + 1) * chunk), table, bias, has_bias, dim, scale, k, allowed,
              allowed_mode, ex_rows, ex_off, r0, min(n_rows, r0 + rows_per_range), rng, n_ranges, hl, hr, size,
              m, s, bad)


@njit(cache=True, nogil=True)
def _scan_serial(users, table, bias, has_bias, dim, scale, k, allowed, allowed_mode, ex_rows, ex_off,
                 chunk, n_chunks, n_ranges, rows_per_range, hl, hr, size, m, s, bad):
    n_users, n_rows = users.shape[0], table.shape[0]
    for cell in range(n_chunks * n_ranges):
        c, rng = cell // n_ranges, cell % n_ranges
        r0 = rng * rows_per_range
        _scan(users, c * chunk, min(n_users, (c + 1) * chunk), table, bias, has_bias, dim, scale, k, allowed,
              allowed_mode, ex_rows, ex_off, r0, min(n_rows, r0 + rows_per_range), rng, n_ranges, hl, hr, size,
              m, s, bad)


@njit(cache=True, nogil=True)
def _user_f64(users, u, table, bias, has_bias, dim, scale, k, allowed, allowed_mode, ex_rows, ex_off, hl, hr):
    """Float64 recompute of user u; returns (count, log_normalizer, bad row or -1)."""
    m = -np.inf
    s = 0.0
    sz = 0
    for r in range(table.shape[0]):
        acc = 0.0
        for t in range(dim):
            acc += np.float64(table[r, t]) * np.float64(users[u, t])
        if has_bias:
            acc += np.float64(bias[r])
        acc *= np.float64(scale)
        if not math.isfinite(acc):
            return 0, 0.0, r
        if acc > m:
            s = s * math.exp(m - acc) + 1.0
            m = acc
        else:
            s += math.exp(acc - m)
        if _eligible(u, r, allowed, allowed_mode, ex_rows, ex_off):
            sz = _offer(hl, hr, sz, k, acc, r)
    return sz, m + math.log(s), -1


def _sorted_excludes(exclude, exclude_offsets, n_users):
    """(rows, offsets): each user's excluded rows sorted; offsets of length 2 mean one shared list
    (with one user the two forms coincide)."""
    if exclude is None:
        return np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64)
    off = (np.array([0, exclude.shape[0]], dtype=np.int64) if exclude_offsets is None
           else np.array(exclude_offsets, dtype=np.int64))
    rows = exclude.copy()
    for b in range(off.shape[0] - 1):
        rows[off[b]:off[b + 1]].sort()
    return rows, off


def topk(users, table, bias, dim, k, allowed, exclude, exclude_offsets, scale, threads=0, row_scale=None):
    """numba backend of ``rankcore._core.topk`` (same arguments and results).

    A compressed table (float16, uint16 = bfloat16 bits, int8 with ``row_scale``) is dequantised to
    float32 once per call (int8: q * scale), then scanned like a float32 one: the JIT scan reads
    float32 rows only, so this backend gains no memory from compression.
    """
    check_args(users, table, bias, dim, k, allowed, exclude, exclude_offsets, scale, row_scale)
    if table.dtype != np.float32:
        table = np.ascontiguousarray(dequantize(table, row_scale))
    n_users, n_rows = users.shape[0], table.shape[0]
    kk = min(int(k), n_rows)
    has_bias = bias is not None
    b_arr = bias if has_bias else np.zeros(1, dtype=np.float32)
    mode = 0 if allowed is None else (2 if allowed.ndim == 2 else 1)
    a_arr = np.zeros((1, 1), dtype=np.uint8) if allowed is None else allowed.reshape(-1, n_rows)
    ex_rows, ex_off = _sorted_excludes(exclude, exclude_offsets, n_users)
    sc = np.float32(scale)
    if n_users == 0:
        return (np.zeros((0, kk), dtype=np.int64), np.zeros((0, kk), dtype=np.float32), np.zeros((0, kk)),
                np.zeros(0, dtype=np.int64), np.zeros(0))
    n_threads = numba.config.NUMBA_NUM_THREADS if not threads else min(int(threads), numba.config.NUMBA_NUM_THREADS)
    chunk = min(n_users, USER_CHUNK)
    n_chunks = -(-n_users // chunk)
    max_ranges = max(1, n_rows * dim // MIN_RANGE_FLOATS)
    n_ranges = 1 if n_chunks >= n_threads else min(max_ranges, -(-n_threads // n_chunks))
    rows_per_range = -(-n_rows // n_ranges)
    slots = n_users * n_ranges
    hl = np.full((slots, kk), -np.inf, dtype=np.float32)
    hr = np.full((slots, kk), _NO_ROW, dtype=np.int64)
    size = np.zeros(slots, dtype=np.int64)
    m = np.full(slots, -np.inf, dtype=np.float32)
    s = np.zeros(slots)
    bad = np.zeros(slots, dtype=np.bool_)
    args = (users, table, b_arr, has_bias, int(dim), sc, kk, a_arr, mode, ex_rows, ex_off, chunk, n_chunks,
            n_ranges, rows_per_range, hl, hr, size, m, s, bad)
    if n_threads == 1 or n_chunks * n_ranges == 1:
        _scan_serial(*args)
    else:
        previous = numba.get_num_threads()
        try:
            numba.set_num_threads(n_threads)
            _scan_parallel(*args)
        finally:
            numba.set_num_threads(previous)
    return _merge(users, table, b_arr, has_bias, int(dim), sc, kk, a_arr, mode, ex_rows, ex_off,
                  n_ranges, hl, hr, size, m, s, bad)


def _merge(users, table, b_arr, has_bias, dim, sc, kk, a_arr, mode, ex_rows, ex_off, n_ranges, hl, hr, size,
           m, s, bad):
    """Per-user results from the partial states (NumPy), and the float64 recompute of overflowed users."""
    n_users = users.shape[0]
    hl = hl.reshape(n_users, n_ranges * kk)
    hr = hr.reshape(n_users, n_ranges * kk)
    order = np.lexsort((hr, -hl.astype(np.float64)), axis=-1)[:, :kk]
    rows = np.take_along_axis(hr, order, axis=1)
    logits = np.take_along_axis(hl, order, axis=1)
    counts = np.minimum(size.reshape(n_users, n_ranges).sum(axis=1), kk).astype(np.int64)
    m2 = m.reshape(n_users, n_ranges).astype(np.float64)
    mx = m2.max(axis=1)
    # users whose float32 logits overflowed have meaningless partial states; they are redone below
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(s.reshape(n_users, n_ranges) > 0,
                         s.reshape(n_users, n_ranges) * np.exp(m2 - mx[:, None]), 0.0)
        lognorm = mx + np.log(terms.sum(axis=1))
        scores = np.exp(logits.astype(np.float64) - lognorm[:, None])
    for u in np.flatnonzero(bad.reshape(n_users, n_ranges).any(axis=1)):
        fl = np.full(kk, -np.inf)
        fr = np.full(kk, _NO_ROW, dtype=np.int64)
        c, lse, bad_row = _user_f64(users, int(u), table, b_arr, has_bias, dim, sc, kk, a_arr, mode, ex_rows,
                                    ex_off, fl, fr)
        if bad_row >= 0:
            raise ValueError(f"non-finite logit for item row {bad_row} (user {u}): the item table, bias or "
                             "user vector contains NaN or inf")
        o = np.lexsort((fr, -fl))
        rows[u], counts[u], lognorm[u] = fr[o], c, lse
        with np.errstate(over="ignore"):
            logits[u] = fl[o].astype(np.float32)
        scores[u] = np.exp(fl[o] - lse)
    pad = np.arange(kk)[None, :] >= counts[:, None]
    rows[pad] = -1
    logits[pad] = -np.inf
    scores[pad] = 0.0
    return rows, logits, scores, counts, lognorm
