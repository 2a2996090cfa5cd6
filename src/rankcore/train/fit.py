"""Train a model from Personalize datasets with ``implicit`` (ALS or BPR, on the CPU).

:func:`train` turns an Interactions dataset (plus optional Items and Users) into a
:class:`rankcore.Model`: interactions are filtered by ``event_type`` and
``event_value_threshold`` (kept when ``EVENT_VALUE >= threshold``, as Personalize does), counted
per (user, item) into a confidence matrix, and factorised by implicit. The model holds the
embeddings (BPR's last item column is its bias, implicit keeping it as an extra factor with the
user side fixed at 1), the Items and Users metadata columns, every interaction as history (for
Interactions filters), the mean user vector as cold start, and ``training``: algorithm,
parameters, row counts, the files' SHA-256, ``regularization``, ``alpha`` and ``logit_scale``,
fitted on the newest interaction of a sample of users that training never sees
(:mod:`.temperature`). The same seed, data and ``num_threads=1`` give the same model bit for bit.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..model import History, Model
from .importers import factors_from_implicit
from .readers import Dataset, read_interactions, read_items, read_users
from .temperature import fit_logit_scale, with_logit_scale

__all__ = ["train", "ALGORITHMS", "DEFAULT_REGULARIZATION", "TEMPERATURE_USERS"]

ALGORITHMS = ("als", "bpr")
DEFAULT_REGULARIZATION = 0.01  # implicit's default for both algorithms
#: Users whose newest interaction is held out of training to fit the logit scale.
TEMPERATURE_USERS = 2000


def _dataset(data, reader) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return reader(data)
    raise TypeError(f"expected a path or a Dataset, got {type(data).__name__}")


def interaction_mask(frame, event_type=None, event_value_threshold=None) -> np.ndarray:
    """bool (rows,): the interactions training uses (event type match, value at threshold)."""
    keep = np.ones(len(frame), dtype=bool)
    if event_type is not None:
        if "EVENT_TYPE" not in frame.columns:
            raise ValueError("--event-type given but the interactions have no EVENT_TYPE column")
        keep &= (frame["EVENT_TYPE"].str.lower() == str(event_type).lower()).fillna(False).to_numpy(bool)
    if event_value_threshold is not None:
        if "EVENT_VALUE" not in frame.columns:
            raise ValueError("--event-value-threshold given but the interactions have no EVENT_VALUE column")
        values = np.asarray(frame["EVENT_VALUE"], dtype=np.float64)
        keep &= values >= float(event_value_threshold)
    return keep


def _fit_implicit(algorithm: str, matrix, *, factors, iterations, regularization, alpha,
                  learning_rate, seed, num_threads, progress):
    from threadpoolctl import threadpool_limits  # implicit's dependency: one BLAS thread

    if algorithm == "als":
        from implicit.cpu.als import AlternatingLeastSquares as Algo  # optional extra
        params = dict(factors=factors, iterations=iterations, regularization=regularization,
                      alpha=alpha)
    else:
        from implicit.cpu.bpr import BayesianPersonalizedRanking as Algo  # optional extra
        params = dict(factors=factors, iterations=iterations, regularization=regularization,
                      learning_rate=learning_rate)
    with threadpool_limits(limits=1, user_api="blas"):  # implicit threads itself
        algo = Algo(random_state=seed, num_threads=num_threads, **params)
        algo.fit(matrix, show_progress=progress)
    return algo


def _history(frame, user_codes, item_codes, n_users) -> History:
    """Every interaction of a known user and item, per user by time: for Interactions filters."""
    import pandas as pd  # optional extra (rankcore[train])

    keep = (user_codes >= 0) & (item_codes >= 0)
    if "EVENT_TYPE" in frame.columns:
        raw_codes, raw = pd.factorize(frame["EVENT_TYPE"])  # few distinct values
        lowered = np.array([str(e).lower() for e in raw] + [""], dtype=object)  # -1: missing
        names, to_name = np.unique(lowered.astype(str), return_inverse=True)
        used, codes = np.unique(to_name[raw_codes][keep], return_inverse=True)
        names = names[used]
    else:
        names, codes = np.array([""]), np.zeros(int(keep.sum()), np.int64)
    if len(names) > np.iinfo(np.int16).max:
        raise ValueError("too many distinct event types")
    users, items = user_codes[keep], item_codes[keep]
    ts = np.asarray(frame["TIMESTAMP"], dtype=np.float64)[keep]
    order = np.lexsort((ts, users))
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=offsets[1:])
    return History(offsets, items[order].astype(np.int64), codes[order].astype(np.int16),
                   ts[order], tuple(str(n) for n in names))


def _temperature_rows(user_codes, ts, train_rows, n_users, seed) -> np.ndarray:
    """Row numbers (into the frame) of the newest training interaction of sampled users with 3+."""
    counts = np.bincount(user_codes[train_rows], minlength=n_users)
    eligible = np.flatnonzero(counts >= 3)
    rng = np.random.default_rng([seed, 1])
    chosen = np.zeros(n_users, dtype=bool)
    chosen[rng.permutation(eligible)[:TEMPERATURE_USERS]] = True
    rows = train_rows[chosen[user_codes[train_rows]]]
    if not len(rows):
        return rows
    order = np.lexsort((rows, ts[rows], user_codes[rows]))  # by user, then time, then file order
    rows = rows[order]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = user_codes[rows][1:] != user_codes[rows][:-1]
    return rows[last]


def _factorize_kept(column, keep_rows: np.ndarray) -> tuple:
    """``(IDs with a row in keep_rows, in first-appearance order; code per row, -1 otherwise)``."""
    import pandas as pd  # optional extra (rankcore[train])

    codes, uniques = pd.factorize(column)  # hashes the Arrow strings, no Python str per row
    used = np.zeros(len(uniques), dtype=bool)
    used[codes[keep_rows]] = True
    remap = np.full(len(uniques) + 1, -1, np.int64)
    remap[np.flatnonzero(used)] = np.arange(int(used.sum()))
    return np.asarray(uniques)[used], remap[codes]  # codes -1 (missing) map to remap[-1] = -1


def _codes(frame, train_rows: np.ndarray, items_ds) -> tuple:
    """``(user IDs, user code per row, item IDs, item code per row)``; -1 for IDs not trained on.

    Users are those with a training interaction; the catalog also holds the Items dataset's
    items nobody interacted with yet.
    """
    import pandas as pd  # optional extra (rankcore[train])

    user_ids, user_codes = _factorize_kept(frame["USER_ID"], train_rows)
    item_ids, item_codes = _factorize_kept(frame["ITEM_ID"], train_rows)
    if items_ds is not None:
        extra = items_ds.frame["ITEM_ID"].to_numpy()
        item_ids = np.concatenate([item_ids, extra[~pd.Index(extra).isin(item_ids)]])
    return pd.Index(user_ids), user_codes, pd.Index(item_ids), item_codes


def train(interactions, items=None, users=None, *, algorithm: str = "als", factors: int = 64,
          iterations: int = 15, regularization: float | None = None, alpha: float = 1.0,
          learning_rate: float = 0.01, event_type: str | None = None,
          event_value_threshold: float | None = None, seed: int = 0, num_threads: int = 1,
          exclude=None, progress: bool | None = None) -> Model:
    """Train a model (see the module docstring).

    ``interactions``, ``items``, ``users``: paths or :class:`Dataset`. ``exclude`` (bool per
    interaction row, optional) drops rows from training (the evaluation split's truth) while
    keeping them in the history. ``progress`` defaults to stderr being a terminal.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    for name, value in (("factors", factors), ("iterations", iterations), ("num_threads", num_threads)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name == "num_threads" else 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    reg = DEFAULT_REGULARIZATION if regularization is None else float(regularization)
    if not np.isfinite(reg) or reg < 0 or not np.isfinite(alpha) or alpha <= 0:
        raise ValueError("regularization must be finite and >= 0, alpha finite and > 0")
    progress = sys.stderr.isatty() if progress is None else progress
    inter = _dataset(interactions, read_interactions)
    items_ds, users_ds = _dataset(items, read_items), _dataset(users, read_users)
    frame = inter.frame
    import scipy.sparse as sp  # implicit's dependency (optional extra)

    use = interaction_mask(frame, event_type, event_value_threshold)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (len(frame),):
            raise ValueError(f"exclude must have one flag per interaction ({len(frame)})")
        use &= ~exclude
    train_rows = np.flatnonzero(use)
    if not len(train_rows):
        raise ValueError(f"{inter.path}: no interaction left to train on after filtering")
    user_index, user_codes, item_index, item_codes = _codes(frame, train_rows, items_ds)
    ts = np.asarray(frame["TIMESTAMP"], dtype=np.float64)

    held = _temperature_rows(user_codes, ts, train_rows, len(user_index), seed)
    fit_rows = np.setdiff1d(train_rows, held, assume_unique=True)
    matrix = sp.csr_matrix((np.ones(len(fit_rows), np.float32),
                            (user_codes[fit_rows], item_codes[fit_rows])),
                           shape=(len(user_index), len(item_index)))
    matrix.sum_duplicates()
    algo = _fit_implicit(algorithm, matrix, factors=int(factors), iterations=int(iterations),
                         regularization=reg, alpha=float(alpha), learning_rate=float(learning_rate),
                         seed=int(seed), num_threads=int(num_threads), progress=progress)
    user_emb, item_emb, bias = factors_from_implicit(algo)
    scale = 1.0
    if len(held):
        scale = fit_logit_scale(user_emb[user_codes[held]], item_emb, item_codes[held], bias)

    training = {
        "algorithm": algorithm, "library": "implicit",
        "params": {"factors": int(factors), "iterations": int(iterations), "regularization": reg,
                   "alpha": float(alpha), "learning_rate": float(learning_rate),
                   "event_type": event_type, "event_value_threshold": event_value_threshold,
                   "seed": int(seed), "num_threads": int(num_threads)},
        "counts": {"interactions": len(frame), "trained_on": len(fit_rows),
                   "temperature_holdout": len(held), "users": len(user_index),
                   "items": len(item_index)},
        "checksum": {ds.kind: ds.checksum for ds in (inter, items_ds, users_ds) if ds is not None},
        "regularization": reg, "alpha": float(alpha), "logit_scale": 1.0,
    }
    base = Model.from_arrays(
        list(item_index), item_emb, item_bias=bias, user_ids=list(user_index), user_embeddings=user_emb,
        item_metadata=None if items_ds is None else items_ds.frame,
        user_metadata=None if users_ds is None else users_ds.frame)
    model = Model(item_index=base.item_index, item_table=base.item_table, user_index=base.user_index,
                  user_embeddings=base.user_embeddings, cold_start=base.cold_start,
                  item_columns=base.item_columns, user_columns=base.user_columns,
                  history=_history(frame, user_codes, item_codes, len(user_index)), training=training)
    return with_logit_scale(model, scale)
