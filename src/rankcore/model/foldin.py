"""Fold-in: a user vector from a list of interactions, by the closed-form ALS user solve.

For item vectors ``Y`` (n_items, dim) and a user's confidences ``c_i = alpha * w_i`` on items
``i``, the vector is ``x = (YᵀY + λI + Σ_i (c_i - 1) y_i y_iᵀ)⁻¹ Σ_i c_i y_i``: implicit's
``AlternatingLeastSquares.recalculate_user`` (Hu, Koren and Volinsky's implicit-feedback ALS).
``λ`` and ``alpha`` come from ``Model.training`` (``regularization``, ``alpha``); the result is
multiplied by ``training["logit_scale"]`` (the model's user side carries the scale). The Gram
matrix ``YᵀY`` is computed once per model and item table. ``solve_users`` solves many users at
once (the evaluation protocol folds in every held-out user).
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

__all__ = ["fold_in", "solve_users", "item_gram"]

#: model -> (item table the Gram matrix was computed from, Gram matrix float64 (dim, dim))
_GRAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def item_gram(item_vectors: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """``YᵀY`` float64 (dim, dim), accumulated in row blocks (the table may be memory-mapped)."""
    dim = item_vectors.shape[1]
    gram = np.zeros((dim, dim), np.float64)
    for start in range(0, item_vectors.shape[0], block):
        y = np.asarray(item_vectors[start:start + block], dtype=np.float64)
        gram += y.T @ y
    return gram


def _model_gram(model) -> np.ndarray:
    cached = _GRAMS.get(model)
    if cached is None or cached[0] is not model.item_table:
        cached = (model.item_table, item_gram(model.item_table.embeddings))
        _GRAMS[model] = cached
    return cached[1]


def _training_number(model, key: str, default=None) -> float:
    value = model.training.get(key, default)
    if value is None:
        raise ValueError(f"fold-in needs the model's {key!r}, which its training metadata lacks; "
                         f"set model.training[{key!r}] (implicit's default regularization is 0.01)")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"model training {key!r} must be finite and >= 0, got {value}")
    return value


def solve_users(item_vectors: np.ndarray, gram: np.ndarray, regularization: float,
                indptr: np.ndarray, indices: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """float64 (n_users, dim): the ALS solve for each CSR row ``indptr``/``indices``/``confidence``.

    Users whose confidences are all 1 share one matrix ``YᵀY + λI`` (solved once for all of them);
    the others get their own ``dim x dim`` system. A user with no items gets the zero vector.
    """
    dim = gram.shape[0]
    n = len(indptr) - 1
    base = gram + regularization * np.eye(dim)
    y = np.asarray(item_vectors[indices] if len(indices) else np.zeros((0, dim)), dtype=np.float64)
    c = np.asarray(confidence, dtype=np.float64)
    b = np.zeros((n, dim))
    owner = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(b, owner, y * c[:, None])
    out = np.zeros((n, dim))
    special = np.zeros(n, dtype=bool)
    np.logical_or.at(special, owner, c != 1.0)
    plain = np.flatnonzero(~special)
    if len(plain):
        out[plain] = np.linalg.solve(base, b[plain].T).T
    for u in np.flatnonzero(special).tolist():  # one small system per user with weighted items
        a, z = int(indptr[u]), int(indptr[u + 1])
        yu = y[a:z]
        out[u] = np.linalg.solve(base + (yu * (c[a:z] - 1.0)[:, None]).T @ yu, b[u])
    return out


def fold_in(model, item_ids: Sequence[str], weights=None) -> np.ndarray:
    """float32 (dim,): ``model``'s user vector for interactions with ``item_ids`` (see module doc).

    ``weights`` (one positive finite number per item, default 1) are summed over repeated items
    and multiplied by ``training["alpha"]`` (default 1). Unknown item IDs are ignored; with no
    known item the result is the model's cold-start vector.
    """
    if isinstance(item_ids, str) or not hasattr(item_ids, "__len__"):
        raise TypeError("item_ids must be a list of str item IDs")
    rows = model.item_rows(list(item_ids))
    if weights is None:
        w = np.ones(len(rows))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(rows),):
            raise ValueError(f"weights must have one value per item ({len(rows)}), got shape {w.shape}")
        if not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError("weights must be finite and > 0")
    known = rows >= 0
    if not known.any():
        return model.cold_start.copy()
    reg = _training_number(model, "regularization")
    alpha = _training_number(model, "alpha", 1.0)
    scale = _training_number(model, "logit_scale", 1.0)
    items, inverse = np.unique(rows[known], return_inverse=True)
    conf = np.bincount(inverse, weights=w[known]) * alpha
    vectors = model.item_table.vectors
    x = solve_users(vectors, _model_gram(model), reg, np.array([0, len(items)]), items, conf)[0]
    return (x * scale).astype(np.float32)
