"""Importers: models trained elsewhere, as a :class:`rankcore.Model`.

* :func:`from_implicit`: an ``implicit`` ALS or BPR model (CPU, or GPU through its ``to_cpu()``).
  BPR keeps its item bias as an extra last factor with the user side fixed at 1; that column
  becomes the item bias. ``training`` records the algorithm, ``regularization`` and ``alpha`` (for
  fold-in) and ``logit_scale``.
* :func:`read_embeddings` / :func:`from_embeddings`: embeddings stored as Parquet (an ID column and
  either one list column or one column per factor) or NumPy ``.npz`` (arrays ``ids`` and
  ``embeddings``, optional ``bias``).
* :func:`from_lightfm`: the LightFM-style ``(biases, embeddings)`` pairs. Its score is
  ``u·i + b_u + b_i``; a user's own bias shifts every item's logit equally, which changes neither
  the ranking nor the softmax, so the item bias is kept and the user bias dropped. For a LightFM
  model ``m``: ``from_lightfm(item_ids, *m.get_item_representations(), user_ids,
  *m.get_user_representations())``.

Imported models have logit scale 1 unless ``logit_scale`` says otherwise.
"""
from __future__ import annotations

import os

import numpy as np

from ..model import Model
from .temperature import with_logit_scale

__all__ = ["from_implicit", "factors_from_implicit", "read_embeddings", "from_embeddings",
           "from_lightfm"]


def _is_bpr(algo) -> bool:
    return type(algo).__name__ == "BayesianPersonalizedRanking"


def _on_host(algo):
    """The CPU twin of an implicit GPU model (``to_cpu()``), or ``algo`` itself."""
    if not hasattr(algo, "user_factors") and hasattr(algo, "to_cpu"):
        return algo.to_cpu()
    if type(getattr(algo, "item_factors", None)).__module__.startswith("implicit.gpu"):
        return algo.to_cpu()  # GPU matrices: copy to host arrays
    return algo


def factors_from_implicit(algo) -> tuple:
    """``(user float32 (U, d), item float32 (N, d), item bias float32 (N,) or None)``."""
    algo = _on_host(algo)
    users, items = getattr(algo, "user_factors", None), getattr(algo, "item_factors", None)
    if users is None or items is None:
        raise ValueError("the implicit model has no factors: call fit() first")
    users = np.asarray(users, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    if _is_bpr(algo):
        if items.shape[1] < 2 or not np.all(users[:, -1] == 1.0):
            raise ValueError("a BPR model's last user factor must be 1 (implicit's bias column)")
        return (np.ascontiguousarray(users[:, :-1]), np.ascontiguousarray(items[:, :-1]),
                np.ascontiguousarray(items[:, -1]))
    return users, items, None


def from_implicit(algo, user_ids, item_ids, *, logit_scale: float = 1.0,
                  regularization: float | None = None) -> Model:
    """A Model from a fitted implicit ALS or BPR model and the IDs of its rows.

    ``user_ids``/``item_ids`` give the ID of each row of ``user_factors``/``item_factors``.
    ``regularization`` defaults to the model's own (used by :meth:`Model.fold_in`).
    """
    algo = _on_host(algo)
    users, items, bias = factors_from_implicit(algo)
    user_ids, item_ids = list(user_ids), list(item_ids)
    if len(user_ids) != users.shape[0] or len(item_ids) != items.shape[0]:
        raise ValueError(f"the implicit model has {users.shape[0]} users and {items.shape[0]} items, "
                         f"got {len(user_ids)} user IDs and {len(item_ids)} item IDs")
    reg = float(getattr(algo, "regularization", 0.01) if regularization is None else regularization)
    training = {"algorithm": "bpr" if _is_bpr(algo) else "als", "library": "implicit",
                "imported": True, "regularization": reg,
                "alpha": float(getattr(algo, "alpha", 1.0)), "logit_scale": 1.0}
    model = Model.from_arrays(item_ids, items, item_bias=bias, user_ids=user_ids,
                              user_embeddings=users, training=training)
    return model if logit_scale == 1.0 else with_logit_scale(model, logit_scale)


def read_embeddings(path, id_column: str = "ID") -> tuple:
    """``(ids list[str], vectors float32 (n, d), bias float32 (n,) or None)`` from a file.

    Parquet: ``id_column`` plus a ``BIAS`` column (optional) and either one list-valued column or
    numeric factor columns (in file order). ``.npz``: arrays ``ids``, ``embeddings``, ``bias``.
    """
    path = os.fspath(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or "embeddings" not in z:
                raise ValueError(f"{path}: needs arrays 'ids' and 'embeddings', has {list(z.keys())}")
            ids = [str(v) if not isinstance(v, str) else v for v in z["ids"].tolist()]
            bias = np.asarray(z["bias"], np.float32) if "bias" in z else None
            return ids, np.asarray(z["embeddings"], np.float32), bias
    import pandas as pd  # optional extra (rankcore[train])

    frame = pd.read_parquet(path)
    cols = {str(c).upper(): c for c in frame.columns}
    if id_column.upper() not in cols:
        raise ValueError(f"{path}: no ID column {id_column!r} (columns {list(frame.columns)})")
    ids = frame[cols[id_column.upper()]].astype(str).tolist()
    bias = frame[cols["BIAS"]].to_numpy(np.float32) if "BIAS" in cols else None
    rest = [c for u, c in cols.items() if u not in (id_column.upper(), "BIAS")]
    if len(rest) == 1 and frame[rest[0]].dtype.kind == "O":
        vectors = np.stack([np.asarray(v, np.float32) for v in frame[rest[0]].tolist()])
    else:
        vectors = frame[rest].to_numpy(np.float32)
    return ids, vectors, bias


def from_embeddings(items, users=None, *, id_column: str = "ID", logit_scale: float = 1.0,
                    regularization: float | None = None) -> Model:
    """A Model from embedding files (see :func:`read_embeddings`) for items and, optionally, users."""
    item_ids, item_vecs, bias = read_embeddings(items, id_column)
    user_ids = user_vecs = None
    if users is not None:
        user_ids, user_vecs, _ = read_embeddings(users, id_column)
    training = {"imported": True, "logit_scale": 1.0}
    if regularization is not None:
        training["regularization"] = float(regularization)
    model = Model.from_arrays(item_ids, item_vecs, item_bias=bias, user_ids=user_ids,
                              user_embeddings=user_vecs, training=training)
    return model if logit_scale == 1.0 else with_logit_scale(model, logit_scale)


def from_lightfm(item_ids, item_biases, item_embeddings, user_ids=None, user_biases=None,
                 user_embeddings=None, *, logit_scale: float = 1.0) -> Model:
    """A Model from LightFM-style representations (user biases dropped: see the module doc)."""
    del user_biases  # a per-user constant: no effect on ranking or softmax
    model = Model.from_arrays(item_ids, item_embeddings, item_bias=item_biases, user_ids=user_ids,
                              user_embeddings=user_embeddings,
                              training={"imported": True, "logit_scale": 1.0})
    return model if logit_scale == 1.0 else with_logit_scale(model, logit_scale)
