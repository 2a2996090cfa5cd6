"""numba backend: the fallback when the C++ extension is not built.

Same entry points, validation and numerical policy as ``rankcore.core.reference`` (read its
docstring): float32 dot products, float32 ``exp`` of max-subtracted logits, float64 sum, float64
recompute of a request whose float32 logits overflowed, stable descending sort.

numba is imported by this module only; ``rankcore`` imports this module lazily, on first use.
Kernels compile lazily (cached on disk) so read-only and writable arrays both dispatch without
copies. Only the dot product allows reassociation and contraction (``fastmath={"reassoc",
"contract"}``: a float32 sum in another order, no assumption about ``inf``/``NaN``); the softmax
and the sort use no fast-math, since they must respect ``inf`` and ``NaN``. ``prange`` runs over
requests only, and the thread count is changed only inside ``try/finally``.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .quantize import dequantize
from .reference import NONFINITE_USER, check_offsets, check_users

__all__ = ["score", "rank"]

#: ``score``/``rank`` reject non-finite user vectors themselves (inside the compiled single call).
CHECKS_USERS = True

_F32 = np.float32


#: Candidates ahead whose rows are prefetched (rows of a big table are random DRAM reads).
#: Prefetches go to L2 (locality 2, ``prefetcht1`` on x86), which does not hold an L1 fill buffer
#: per line, so far more rows can be on their way than with L1 prefetches (see cpp's dot.h).
PREFETCH_DISTANCE = 32


@intrinsic
def _prefetch(typingctx, address):
    """``llvm.prefetch`` (read, locality 2: into L2 and below) of an integer address."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), (i8p, i32, i32, i32)))
        builder.call(fn, (builder.inttoptr(args[0], i8p), ir.Constant(i32, 0), ir.Constant(i32, 2),
                          ir.Constant(i32, 1)))
        return context.get_dummy_value()

    return types.void(address), codegen


@njit(cache=True, nogil=True)
def _prefetch_row(table, row):
    """Prefetch every cache line of ``table[row]`` (computes addresses only; reads nothing)."""
    start = table.ctypes.data + row * table.strides[0]
    for offset in range(0, table.shape[1] * 4, 64):
        _prefetch(start + offset)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, locals={"acc": numba.float32})
def _dot_f32(table, row, users, b, dim):
    """float32 dot product of ``table[row, :dim]`` and ``users[b]``.

    The only function compiled with fast-math flags, and only ``reassoc``/``contract``: they let
    LLVM split the sum into SIMD lanes and use FMA, while ``inf``/``NaN`` (float32 overflow) keep
    their meaning, so the caller's float64 recompute still sees them.
    """
    acc = 0.0
    for t in range(dim):
        acc += table[row, t] * users[b, t]
    return acc


@njit(cache=True, nogil=True, locals={"acc": numba.float32, "m": numba.float32, "e": numba.float32})
def _softmax_request(users, b, table, bias, has_bias, dim, cands, start, end, scores, logits):
    """Scores and logits of request ``b`` into ``scores/logits[start:end]``; returns -1, or the
    row whose logit is not finite even in float64 (NaN/inf in the table, bias or user)."""
    m = -np.inf
    finite = True
    for j in range(start, min(end, start + PREFETCH_DISTANCE)):
        if cands[j] >= 0:
            _prefetch_row(table, cands[j])
    for j in range(start, end):
        ahead = j + PREFETCH_DISTANCE
        if ahead < end and cands[ahead] >= 0:
            _prefetch_row(table, cands[ahead])
        c = cands[j]
        if c < 0:
            logits[j] = -np.inf
            scores[j] = 0.0
            continue
        acc = _dot_f32(table, c, users, b, dim)
        if has_bias:
            acc += bias[c]
        logits[j] = acc
        if not math.isfinite(acc):
            finite = False
        elif acc > m:
            m = acc
    if finite:
        s = 0.0
        for j in range(start, end):
            if cands[j] < 0:
                continue
            e = np.exp(logits[j] - m)
            scores[j] = e
            s += e
        for j in range(start, end):
            if cands[j] >= 0:
                scores[j] = scores[j] / s
        return -1
    # float32 overflow: recompute the request in float64
    l64 = np.empty(end - start, dtype=np.float64)
    m64 = -np.inf
    for j in range(start, end):
        c = cands[j]
        if c < 0:
            continue
        acc64 = 0.0
        for t in range(dim):
            acc64 += np.float64(table[c, t]) * np.float64(users[b, t])
        if has_bias:
            acc64 += np.float64(bias[c])
        if not math.isfinite(acc64):
            return c
        l64[j - start] = acc64
        if acc64 > m64:
            m64 = acc64
    s64 = 0.0
    for j in range(start, end):
        if cands[j] >= 0:
            s64 += math.exp(l64[j - start] - m64)
    for j in range(start, end):
        if cands[j] >= 0:
            scores[j] = math.exp(l64[j - start] - m64) / s64
            logits[j] = l64[j - start]
    return -1


@njit(cache=True, nogil=True)
def _radix_argsort_u32(keys):
    """Stable argsort of uint32 keys: LSD radix, 4 passes of 8 bits (ties keep input order).

    Keys travel with their indices, so every pass reads sequentially; a pass whose digit is
    the same for every key is skipped.
    """
    n = keys.shape[0]
    k0 = keys.copy()
    k1 = np.empty(n, dtype=np.uint32)
    i0 = np.arange(n)
    i1 = np.empty(n, dtype=np.int64)
    counts = np.empty(257, dtype=np.int64)
    for shift in range(0, 32, 8):
        counts[:] = 0
        for i in range(n):
            counts[((k0[i] >> shift) & 0xFF) + 1] += 1
        skip = False
        for d in range(256):
            if counts[d + 1] == n:
                skip = True
        if skip:
            continue
        for d in range(256):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (k0[i] >> shift) & 0xFF
            p = counts[d]
            k1[p] = k0[i]
            i1[p] = i0[i]
            counts[d] = p + 1
        k0, k1 = k1, k0
        i0, i1 = i1, i0
    return i0


@njit(cache=True, nogil=True)
def _insertion_sort(a):
    """Sort ``a`` ascending in place; linear when only a few elements are out of place."""
    for i in range(1, a.shape[0]):
        v = a[i]
        if a[i - 1] > v:
            j = i
            while j > 0 and a[j - 1] > v:
                a[j] = a[j - 1]
                j -= 1
            a[j] = v


@njit(cache=True, nogil=True)
def _sort_words(words, k):
    """Sort the first ``k`` of distinct uint64 words ascending, in place (the rest is scratch).

    The same method as cpp's sort.h: insertion sort up to 32 words; partial selection when k is
    small; up to 4096 words one counting pass into 2 * next_pow2(n) buckets on the top bits of
    the key (the high half), a branch-free pass that carries the larger of each pair forward,
    then insertion for what is still out of order (big buckets are sorted first); beyond that an
    LSD radix sort of the keys.
    """
    n = words.shape[0]
    if n <= 32:
        _insertion_sort(words)
        return words
    if k * 8 <= n:
        head = np.sort(np.partition(words, k - 1)[:k])
        words[:k] = head
        return words
    if n > 4096:
        order = _radix_argsort_u32((words >> np.uint64(32)).astype(np.uint32))
        return words[order]
    kmin = np.uint32(0xFFFFFFFF)
    kmax = np.uint32(0)
    for i in range(n):
        key = np.uint32(words[i] >> np.uint64(32))
        if key < kmin:
            kmin = key
        if key > kmax:
            kmax = key
    n_buckets = 2
    while n_buckets < 2 * n:
        n_buckets *= 2
    span = np.uint32(kmax - kmin)
    shift = 0
    while (span >> np.uint32(shift)) >= n_buckets:
        shift += 1
    counts = np.zeros(n_buckets + 1, dtype=np.int64)
    for i in range(n):
        counts[((np.uint32(words[i] >> np.uint64(32)) - kmin) >> np.uint32(shift)) + 1] += 1
    largest = 0
    for v in range(1, n_buckets + 1):
        if counts[v] > largest:
            largest = counts[v]
        counts[v] += counts[v - 1]
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        bucket = (np.uint32(words[i] >> np.uint64(32)) - kmin) >> np.uint32(shift)
        p = counts[bucket]
        out[p] = words[i]
        counts[bucket] = p + 1
    if largest > 24:  # skewed keys: sort big buckets first so the passes below stay linear
        start = 0
        for v in range(n_buckets):
            if counts[v] - start > 24:
                out[start:counts[v]] = np.sort(out[start:counts[v]])
            start = counts[v]
    carry = out[0]
    for i in range(1, n):
        v = out[i]
        out[i - 1] = min(carry, v)
        carry = max(carry, v)
    out[n - 1] = carry
    _insertion_sort(out)
    return out


@njit(cache=True, nogil=True)
def _rank_request(b, users, table, bias, has_bias, dim, cands, offsets, out_offsets, tmp_scores,
                  tmp_logits, positions, items, scores, logits):
    """Rank request ``b`` into its ``out_offsets`` slice; returns -1 or a bad row (as above)."""
    start = offsets[b]
    end = offsets[b + 1]
    err = _softmax_request(users, b, table, bias, has_bias, dim, cands, start, end,
                           tmp_scores, tmp_logits)
    if err >= 0:
        return err
    n_valid = 0
    for j in range(start, end):
        if cands[j] >= 0:
            n_valid += 1
    cols = np.empty(n_valid, dtype=np.int64)
    words = np.empty(n_valid, dtype=np.uint64)
    # scores are >= 0, so their bit patterns order like the values; invert for descending. The
    # key goes in the high half of a word and the index in the low half: ascending words are
    # descending scores with ties in input order.
    bits = tmp_scores[start:end].view(np.uint32)
    n = 0
    for j in range(start, end):
        if cands[j] >= 0:
            cols[n] = j - start
            words[n] = (np.uint64(np.uint32(0xFFFFFFFF) - bits[j - start]) << np.uint64(32)) | np.uint64(n)
            n += 1
    lo = out_offsets[b]
    m = out_offsets[b + 1] - lo
    if m == 0:
        return -1
    words = _sort_words(words, m)
    for r in range(m):
        col = cols[np.int64(words[r] & np.uint64(0xFFFFFFFF))]
        positions[lo + r] = col
        items[lo + r] = cands[start + col]
        scores[lo + r] = tmp_scores[start + col]
        logits[lo + r] = tmp_logits[start + col]
    return -1


@njit(cache=True, parallel=True, nogil=True)
def _score_parallel(users, table, bias, has_bias, dim, cands, offsets, scores, logits, errors):
    for b in prange(offsets.shape[0] - 1):
        errors[b] = _softmax_request(users, b, table, bias, has_bias, dim, cands,
                                     offsets[b], offsets[b + 1], scores, logits)


@njit(cache=True, nogil=True)
def _score_serial(users, table, bias, has_bias, dim, cands, offsets, scores, logits, errors):
    for b in range(offsets.shape[0] - 1):
        errors[b] = _softmax_request(users, b, table, bias, has_bias, dim, cands,
                                     offsets[b], offsets[b + 1], scores, logits)


@njit(cache=True, parallel=True, nogil=True)
def _rank_parallel(users, table, bias, has_bias, dim, cands, offsets, out_offsets, tmp_scores,
                   tmp_logits, positions, items, scores, logits, errors):
    for b in prange(offsets.shape[0] - 1):
        errors[b] = _rank_request(b, users, table, bias, has_bias, dim, cands, offsets, out_offsets,
                                  tmp_scores, tmp_logits, positions, items, scores, logits)


@njit(cache=True, nogil=True)
def _rank_serial(users, table, bias, has_bias, dim, cands, offsets, out_offsets, tmp_scores,
                 tmp_logits, positions, items, scores, logits, errors):
    for b in range(offsets.shape[0] - 1):
        errors[b] = _rank_request(b, users, table, bias, has_bias, dim, cands, offsets, out_offsets,
                                  tmp_scores, tmp_logits, positions, items, scores, logits)


@njit(cache=True, nogil=True)
def _prepare(cands, offsets, n_items, padded, k, out_offsets):
    """Validate candidates and fill ``out_offsets``; returns (request, position, value) of the
    first out-of-range candidate, or (-1, 0, 0). One pass, no temporaries."""
    low = -1 if padded else 0
    out_offsets[0] = 0
    for b in range(offsets.shape[0] - 1):
        n_valid = 0
        for j in range(offsets[b], offsets[b + 1]):
            c = cands[j]
            if c < low or c >= n_items:
                return b, j - offsets[b], c
            if c >= 0:
                n_valid += 1
        if k >= 0 and n_valid > k:
            n_valid = k
        out_offsets[b + 1] = out_offsets[b] + n_valid
    return -1, 0, 0


@njit(cache=True, nogil=True)
def _rank_single(users, table, bias, has_bias, dim, cands, k):
    """One request, start to finish, in one compiled call (a numba dispatch costs microseconds).

    Returns (bad position, bad value, non-finite row, positions, items, scores, logits,
    out_offsets); the
    first three are -1 when all went well; bad position -2 means a non-finite user vector.
    """
    n = cands.shape[0]
    n_items = table.shape[0]
    e = np.empty(0, dtype=np.int64)
    f = np.empty(0, dtype=np.float32)
    for t in range(dim):
        if not math.isfinite(users[0, t]):
            return -2, 0, -1, e, e, f, f, e
    for j in range(n):
        c = cands[j]
        if c < 0 or c >= n_items:
            return j, c, -1, e, e, f, f, e
    m = n if k < 0 or k > n else k
    offsets = np.empty(2, dtype=np.int64)
    offsets[0] = 0
    offsets[1] = n
    out_offsets = np.empty(2, dtype=np.int64)
    out_offsets[0] = 0
    out_offsets[1] = m
    tmp_scores = np.empty(n, dtype=np.float32)
    tmp_logits = np.empty(n, dtype=np.float32)
    positions = np.empty(m, dtype=np.int64)
    items = np.empty(m, dtype=np.int64)
    scores = np.empty(m, dtype=np.float32)
    logits = np.empty(m, dtype=np.float32)
    err = _rank_request(0, users, table, bias, has_bias, dim, cands, offsets, out_offsets,
                        tmp_scores, tmp_logits, positions, items, scores, logits)
    return -1, 0, err, positions, items, scores, logits, out_offsets


_EMPTY_BIAS = np.zeros(0, dtype=np.float32)


def _offsets(offsets, n_candidates, n_users):
    if offsets is None:
        if n_users != 1:
            raise ValueError(f"offsets=None means one request, but users has {n_users} rows")
        return np.array([0, n_candidates], dtype=np.int64)
    return check_offsets(offsets, n_candidates, n_users)


def _check(candidates, offsets, n_items, padded, k):
    out_offsets = np.empty(offsets.shape[0], dtype=np.int64)
    b, j, value = _prepare(candidates, offsets, n_items, padded, k, out_offsets)
    if b >= 0:
        raise IndexError(f"candidate {value} out of range for an item table of {n_items} rows "
                         f"(request {b}, position {j})")
    return out_offsets


def _run(parallel, serial, threads, *args):
    n_requests = args[6].shape[0] - 1
    if threads == 1 or n_requests <= 1:
        serial(*args)
    elif threads and threads > 0:
        previous = numba.get_num_threads()
        try:
            numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
            parallel(*args)
        finally:
            numba.set_num_threads(previous)
    else:
        parallel(*args)


def _raise_errors(errors):
    bad = np.flatnonzero(errors >= 0)
    if bad.size:
        b = int(bad[0])
        raise ValueError(
            f"non-finite logit for item row {int(errors[b])} (request {b}): "
            "the item table, bias or user vector contains NaN or inf"
        )


def _compact(users, table, bias, candidates, offsets, padded, row_scale):
    """(float32 table, bias, candidates, rows) of a compressed table's distinct candidate rows,
    dequantised once (int8: q * scale) for the float32 JIT kernels; ``rows[i]``: compact row i's row."""
    offsets = _offsets(offsets, candidates.shape[0], users.shape[0])
    _check(candidates, offsets, table.shape[0], padded, -1)
    if (table.dtype == np.int8) != (row_scale is not None):
        raise ValueError("row_scale is required for an int8 table and only for it")
    valid = candidates >= 0
    rows, inverse = np.unique(candidates[valid], return_inverse=True)
    local = candidates.copy()
    local[valid] = inverse
    small = np.ascontiguousarray(dequantize(table, row_scale, rows))
    return small, None if bias is None else bias[rows], local, rows


def score(users, table, bias, dim, candidates, offsets, padded, threads=0, row_scale=None):
    if table.dtype != _F32:
        table, bias, candidates, _ = _compact(users, table, bias, candidates, offsets, padded, row_scale)
    check_users(users)
    offsets = _offsets(offsets, candidates.shape[0], users.shape[0])
    _check(candidates, offsets, table.shape[0], padded, -1)
    n = candidates.shape[0]
    scores = np.empty(n, dtype=_F32)
    logits = np.empty(n, dtype=_F32)
    errors = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    has_bias = bias is not None
    _run(_score_parallel, _score_serial, threads, users, table, bias if has_bias else _EMPTY_BIAS, has_bias,
         int(dim), candidates, offsets, scores, logits, errors)
    _raise_errors(errors)
    return scores, logits


def rank(users, table, bias, dim, candidates, offsets, padded, k=-1, threads=0, row_scale=None):
    if table.dtype != _F32:
        small, b, local, rows = _compact(users, table, bias, candidates, offsets, padded, row_scale)
        positions, items, scores, logits, out_offsets = rank(users, small, b, dim, local, offsets, padded, k, threads)
        return positions, rows[items], scores, logits, out_offsets
    if offsets is None and not padded and users.shape[0] == 1:
        has_bias = bias is not None
        j, value, err, positions, items, scores, logits, out_offsets = _rank_single(
            users, table, bias if has_bias else _EMPTY_BIAS, has_bias, int(dim), candidates, int(k))
        if j == -2:
            raise ValueError(NONFINITE_USER)
        if j >= 0:
            raise IndexError(f"candidate {value} out of range for an item table of {table.shape[0]} "
                             f"rows (request 0, position {j})")
        if err >= 0:
            _raise_errors(np.array([err]))
        return positions, items, scores, logits, out_offsets
    check_users(users)
    offsets = _offsets(offsets, candidates.shape[0], users.shape[0])
    out_offsets = _check(candidates, offsets, table.shape[0], padded, k)
    total = int(out_offsets[-1])
    n = candidates.shape[0]
    tmp_scores = np.empty(n, dtype=_F32)
    tmp_logits = np.empty(n, dtype=_F32)
    positions = np.empty(total, dtype=np.int64)
    items = np.empty(total, dtype=np.int64)
    scores = np.empty(total, dtype=_F32)
    logits = np.empty(total, dtype=_F32)
    errors = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    has_bias = bias is not None
    _run(_rank_parallel, _rank_serial, threads, users, table, bias if has_bias else _EMPTY_BIAS, has_bias,
         int(dim), candidates, offsets, out_offsets, tmp_scores, tmp_logits, positions, items,
         scores, logits, errors)
    _raise_errors(errors)
    return positions, items, scores, logits, out_offsets
