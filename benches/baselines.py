"""The code a user would write without rankcore: the baselines every bench sits beside.

* ``numpy_naive``: ``E[idx] @ u``, ``exp``, ``argsort``.
* ``faiss_path``: faiss ``fvec_inner_products_by_idx`` for the logits, NumPy softmax and sort.
  Its Python wrapper takes (ip, x, y, ids, d, nx, ny); for batches the ids are a dense (nx, ny)
  block, so the row stride is ny exactly (versions whose C++ signature has ``ld_ids`` get it
  passed explicitly below, since a wrong default there reads out of bounds).
* ``numba_plain``/``numba_plain_batch``: a plain ``@njit`` loop (``prange`` over requests).
"""
import inspect

import numba
import numpy as np
from numba import njit, prange

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None


def numpy_naive(user, emb, idx):
    logits = emb[idx] @ user
    e = np.exp(logits - logits.max())
    s = e / e.sum()
    order = np.argsort(-s, kind="stable")
    return order, s[order]


_FAISS_LD = faiss is not None and "ld_ids" in (inspect.signature(faiss.fvec_inner_products_by_idx).parameters
                                               if hasattr(faiss, "fvec_inner_products_by_idx") else {})


def faiss_logits(users, emb, ids):
    """(nx, ny) inner products of users (nx, d) with emb[ids] (ids (nx, ny) int64)."""
    nx, ny = ids.shape
    ip = np.empty((nx, ny), dtype=np.float32)
    args = [faiss.swig_ptr(ip), faiss.swig_ptr(users), faiss.swig_ptr(emb), faiss.swig_ptr(ids),
            emb.shape[1], nx, ny]
    if _FAISS_LD:
        args.append(ny)
    faiss.fvec_inner_products_by_idx(*args)
    return ip


def faiss_path(user, emb, idx):
    logits = faiss_logits(user[None, :], emb, idx[None, :])[0]
    e = np.exp(logits - logits.max())
    s = e / e.sum()
    order = np.argsort(-s, kind="stable")
    return order, s[order]


@njit(cache=True)
def numba_plain(user, emb, idx):
    n = idx.shape[0]
    logits = np.empty(n, dtype=np.float32)
    for j in range(n):
        acc = np.float32(0.0)
        for t in range(emb.shape[1]):
            acc += emb[idx[j], t] * user[t]
        logits[j] = acc
    e = np.exp(logits - logits.max())
    s = e / e.sum()
    order = np.argsort(-s)
    return order, s[order]


@njit(cache=True, parallel=True)
def numba_plain_batch(users, emb, idx, out_order, out_scores):
    for b in prange(idx.shape[0]):
        n = idx.shape[1]
        logits = np.empty(n, dtype=np.float32)
        for j in range(n):
            acc = np.float32(0.0)
            for t in range(emb.shape[1]):
                acc += emb[idx[b, j], t] * users[b, t]
            logits[j] = acc
        e = np.exp(logits - logits.max())
        s = e / e.sum()
        order = np.argsort(-s)
        out_order[b] = order
        out_scores[b] = s[order]


def numba_threads():
    return numba.get_num_threads()
