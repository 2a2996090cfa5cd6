"""The logit scale (inverse temperature): fitted on a held-out slice, baked into the user side.

Raw factorisation logits have no calibrated scale: an ALS model's catalog softmax is almost
uniform. :func:`fit_logit_scale` picks the one number ``s`` that maximises the held-out items'
log-likelihood under the catalog softmax of ``s * logit``; the objective is concave in ``s``, so a
bracketed Newton search on its derivative finds the optimum. :func:`with_logit_scale` returns a
model whose user embeddings, cold-start vector, context vectors and item bias are multiplied by
the scale, so every scoring path applies it without a kernel change; ``training["logit_scale"]``
records it and fold-in multiplies its solved vector by it. Imported models start at 1.
"""
from __future__ import annotations

import numpy as np

from ..core import ItemTable
from ..model import ContextTable, Model

__all__ = ["fit_logit_scale", "with_logit_scale", "MAX_LOGIT_ELEMENTS", "MIN_USERS"]

#: At most this many held-out logits (users x catalog) are kept in memory while fitting.
MAX_LOGIT_ELEMENTS = 1 << 21
#: ... but never fewer users than this (a huge catalog).
MIN_USERS = 8


def _moments(logits: np.ndarray, s: float) -> tuple:
    """Per row: log-sum-exp, mean and variance of the logits under softmax(s * logits).

    The weights are computed in float32 (the costly ``exp``) and summed in float64.
    """
    m = logits.max(axis=1, keepdims=True)
    e = (logits - m).astype(np.float32)
    e *= np.float32(s)
    np.exp(e, out=e)
    total = e.sum(axis=1, dtype=np.float64)
    w = e * logits  # float64
    mean = w.sum(axis=1) / total
    w *= logits
    var = w.sum(axis=1) / total - mean * mean
    return np.log(total) + s * m[:, 0], mean, np.maximum(var, 0.0)


def fit_logit_scale(user_vectors: np.ndarray, item_vectors: np.ndarray, targets: np.ndarray,
                    item_bias: np.ndarray | None = None, *, bounds: tuple = (1e-3, 1e4)) -> float:
    """The ``s`` maximising ``Σ_h log softmax(s * (U_h · Y + b))[targets[h]]`` over the catalog.

    ``user_vectors`` (H, dim), ``item_vectors`` (N, dim), ``targets`` int (H,) item rows. Users
    beyond :data:`MAX_LOGIT_ELEMENTS` / N (at least :data:`MIN_USERS`) are dropped. Returns 1.0 when
    the held-out items score no better than a catalog average (no evidence for any scale).
    """
    u = np.asarray(user_vectors, dtype=np.float32)
    t = np.asarray(targets, dtype=np.int64)
    if u.ndim != 2 or t.shape != (u.shape[0],):
        raise ValueError("user_vectors must be (H, dim) with one target row per user")
    if len(t) == 0:
        raise ValueError("no held-out interactions to fit the logit scale on")
    keep = max(MIN_USERS, MAX_LOGIT_ELEMENTS // max(1, item_vectors.shape[0]))
    u, t = u[:keep], t[:keep]
    logits = (u @ np.asarray(item_vectors, dtype=np.float32).T).astype(np.float64)
    if item_bias is not None:
        logits += np.asarray(item_bias, dtype=np.float64)
    target = logits[np.arange(len(t)), t]

    def slope(s: float) -> tuple:
        _, mean, var = _moments(logits, s)
        return float((target - mean).sum()), float(-var.sum())

    lo, hi = bounds
    g_lo, _ = slope(lo)
    if g_lo <= 0:
        return 1.0
    g_hi, _ = slope(hi)
    if g_hi >= 0:
        return float(hi)
    s = min(max(1.0, lo), hi)
    for _ in range(100):  # bracketed Newton: converges in a handful of steps, bisects otherwise
        g, dg = slope(s)
        if g > 0:
            lo = s
        else:
            hi = s
        step = s - g / dg if dg < 0 else None
        nxt = step if step is not None and lo < step < hi else float(np.sqrt(lo * hi))
        if abs(nxt - s) <= 1e-7 * s:
            return float(nxt)
        s = nxt
    return float(s)


def with_logit_scale(model: Model, scale: float) -> Model:
    """A copy of ``model`` whose logits are ``scale`` times the unscaled ones.

    The user side (embeddings, cold start, context vectors) and the item bias are multiplied by
    ``scale / model.training.get("logit_scale", 1)``; item vectors are shared, not copied.
    """
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"logit scale must be finite and > 0, got {scale}")
    factor = np.float32(scale / float(model.training.get("logit_scale", 1.0)))
    table = model.item_table
    if table.bias is not None:
        table = ItemTable.from_padded(table.data, table.dim,
                                      bias=np.asarray(table.bias, dtype=np.float32) * factor,
                                      dtype=table.dtype, row_scale=table.row_scale)
    context = {f: ContextTable(ct.index, ct.vectors * factor) for f, ct in model.context.items()}
    training = dict(model.training, logit_scale=scale)
    return Model(item_index=model.item_index, item_table=table, user_index=model.user_index,
                 user_embeddings=model.user_embeddings * factor, cold_start=model.cold_start * factor,
                 context=context, item_columns=model.item_columns, user_columns=model.user_columns,
                 history=model.history, training=training)
