"""Personalize's evaluation protocol: held-out users, fold-in, top 25 over the catalog, metrics.

:func:`split_interactions` holds out 10% of the users with at least two interactions (seeded);
for each, the oldest 90% of their interactions (by ``TIMESTAMP``, then file order) are the input
and the newest 10% (at least one) the truth. :func:`evaluate_split` folds each held-out user's
input into a vector (the model's closed-form ALS solve, :mod:`rankcore.model.foldin`), takes the
top 25 of the whole catalog (:func:`catalog_top_k`, a blocked users x items product with
``argpartition``; ties go to the lower item row) and scores them with
:func:`~rankcore.evaluation.metrics.metrics_from_hits`, beside a popularity-count baseline
(items by interaction count outside the truth) on the same split.

Decision: like Personalize's recommendations without a filter, the top 25 exclude nothing, not
even the input items (``exclude_seen=True`` removes them, for model and baseline alike).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..model import Model
from ..model.foldin import item_gram, solve_users
from .metrics import TOP_K, metrics_from_hits

__all__ = ["Split", "split_interactions", "catalog_top_k", "evaluate_split", "evaluate",
           "HOLDOUT_FRACTION"]

HOLDOUT_FRACTION = 0.1
#: Logits kept in memory at once by catalog_top_k (users per block = this / catalog size).
BLOCK_ELEMENTS = 1 << 24


@dataclass
class Split:
    """Held-out users and their interactions, as row numbers into the interactions frame.

    ``input_indptr``/``input_rows`` and ``truth_indptr``/``truth_rows`` are CSR over the held-out
    users (each slice oldest first); ``truth_mask`` flags the truth rows of the whole frame.
    """

    users: list
    input_indptr: np.ndarray
    input_rows: np.ndarray
    truth_indptr: np.ndarray
    truth_rows: np.ndarray
    truth_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def split_interactions(frame, *, seed: int = 0, fraction: float = HOLDOUT_FRACTION,
                       use: np.ndarray | None = None) -> Split:
    """Personalize's split of ``frame`` (rows flagged by ``use``, default all; see the module doc)."""
    import pandas as pd  # optional extra (rankcore[train]); the frame is a pandas DataFrame

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rows = np.arange(len(frame)) if use is None else np.flatnonzero(use)
    all_codes, uniques = pd.factorize(frame["USER_ID"])
    uniques = np.asarray(uniques)
    codes = all_codes[rows]
    counts = np.bincount(codes, minlength=len(uniques))
    eligible = np.flatnonzero(counts >= 2)
    if not len(eligible):
        raise ValueError("no user has two or more interactions to split")
    n_held = max(1, int(round(fraction * len(eligible))))
    held = np.sort(np.random.default_rng(seed).permutation(eligible)[:n_held])
    slot = np.full(len(uniques), -1)
    slot[held] = np.arange(n_held)
    mine = slot[codes] >= 0
    r, s = rows[mine], slot[codes[mine]]
    ts = np.asarray(frame["TIMESTAMP"], dtype=np.float64)[r]
    order = np.lexsort((r, ts, s))
    r, s = r[order], s[order]
    per = np.bincount(s, minlength=n_held)
    starts = np.concatenate(([0], np.cumsum(per)[:-1]))
    pos = np.arange(len(r)) - starts[s]
    n_truth = np.ceil(per * fraction).astype(np.int64)
    is_truth = pos >= (per - n_truth)[s]
    truth_mask = np.zeros(len(frame), dtype=bool)
    truth_mask[r[is_truth]] = True

    def csr(flags):
        indptr = np.zeros(n_held + 1, np.int64)
        np.cumsum(np.bincount(s[flags], minlength=n_held), out=indptr[1:])
        return indptr, r[flags]

    (ip, ir), (tp, tr) = csr(~is_truth), csr(is_truth)
    return Split([str(u) for u in uniques[held].tolist()], ip, ir, tp, tr, truth_mask)


def catalog_top_k(users: np.ndarray, item_vectors: np.ndarray, k: int = TOP_K, *,
                  item_bias: np.ndarray | None = None, exclude: tuple | None = None,
                  progress: bool = False) -> np.ndarray:
    """int64 (n_users, min(k, n_items)): each user's best item rows over the whole catalog.

    Highest logit ``u · y + b`` first, ties to the lower row. ``exclude`` = ``(indptr, rows)`` CSR
    of item rows to leave out per user. One function so a native catalog top-K can replace it.
    """
    users = np.asarray(users, dtype=np.float32)
    n_items = item_vectors.shape[0]
    k = min(int(k), n_items)
    out = np.empty((users.shape[0], k), dtype=np.int64)
    block = max(1, BLOCK_ELEMENTS // max(1, n_items))
    starts = range(0, users.shape[0], block)
    if progress:
        from tqdm import tqdm  # optional extra: progress bar on a terminal
        starts = tqdm(starts, desc="evaluate", unit="block", file=sys.stderr)
    bias = None if item_bias is None else np.asarray(item_bias, dtype=np.float32)
    for a in starts:
        logits = users[a:a + block] @ item_vectors.T
        if bias is not None:
            logits += bias
        if exclude is not None:
            indptr, rows = exclude
            lo, hi = indptr[a], indptr[min(a + block, users.shape[0])]
            owner = np.repeat(np.arange(len(logits)), np.diff(indptr[a:a + len(logits) + 1]))
            logits[owner, rows[lo:hi]] = -np.inf
        if k < n_items:
            cand = np.sort(np.argpartition(-logits, k - 1, axis=1)[:, :k], axis=1)
        else:
            cand = np.broadcast_to(np.arange(n_items), logits.shape)
        vals = np.take_along_axis(logits, cand, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        out[a:a + len(logits)] = np.take_along_axis(cand, order, axis=1)
    return out


def _user_vectors(model: Model, split: Split, item_rows: np.ndarray) -> np.ndarray:
    """Fold each held-out user's input into a vector; users with no known input get cold start."""
    rows = item_rows[split.input_rows]
    owner = np.repeat(np.arange(len(split)), np.diff(split.input_indptr))
    known = rows >= 0
    key = owner[known] * np.int64(model.n_items) + rows[known]
    uniq, counts = np.unique(key, return_counts=True)
    u, items = uniq // model.n_items, uniq % model.n_items
    indptr = np.zeros(len(split) + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=len(split)), out=indptr[1:])
    reg = model.training.get("regularization")
    if reg is None:
        raise ValueError("the model's training metadata has no 'regularization' for fold-in; "
                         "set model.training['regularization'] (implicit's default is 0.01)")
    alpha = float(model.training.get("alpha", 1.0))
    vectors = model.item_table.embeddings
    x = solve_users(vectors, item_gram(vectors), float(reg), indptr, items, counts * alpha)
    x = (x * float(model.training.get("logit_scale", 1.0))).astype(np.float32)
    x[np.diff(indptr) == 0] = model.cold_start
    return x


def _scores(recs: np.ndarray, split: Split, truth_codes: np.ndarray, n_catalog: int) -> dict:
    """Metrics of recommended rows ``recs`` (users, k) against the truth (item codes, -1 unknown)."""
    n = len(split)
    owner = np.repeat(np.arange(n), np.diff(split.truth_indptr))
    pairs = np.unique(owner * np.int64(2 ** 31) + truth_codes)
    n_rel = np.bincount(pairs // 2 ** 31, minlength=n)
    rec_keys = np.arange(n)[:, None] * np.int64(2 ** 31) + recs
    hits = np.isin(rec_keys, pairs)
    return metrics_from_hits(hits, n_rel, len(np.unique(recs)), n_catalog)


def evaluate_split(model: Model, frame, split: Split, *, use: np.ndarray | None = None,
                   exclude_seen: bool = False, progress: bool | None = None) -> dict:
    """``{"model": metrics, "popularity": metrics, "users": N}`` on ``split`` of ``frame``."""
    import pandas as pd  # optional extra (rankcore[train])

    progress = sys.stderr.isatty() if progress is None else progress
    codes, uniques = pd.factorize(frame["ITEM_ID"])  # one lookup per distinct ID
    item_rows = np.append(model.item_rows([str(v) for v in uniques.tolist()]), -1)[codes]
    user_vecs = _user_vectors(model, split, item_rows)
    seen = None
    if exclude_seen:
        rows = item_rows[split.input_rows]
        owner = np.repeat(np.arange(len(split)), np.diff(split.input_indptr))
        owner, rows = owner[rows >= 0], rows[rows >= 0]
        indptr = np.zeros(len(split) + 1, np.int64)
        np.cumsum(np.bincount(owner, minlength=len(split)), out=indptr[1:])
        seen = (indptr, rows)
    vectors = model.item_table.embeddings
    bias = None if model.item_bias is None else np.asarray(model.item_bias)
    recs = catalog_top_k(user_vecs, vectors, TOP_K, item_bias=bias, exclude=seen, progress=progress)

    counted = ~split.truth_mask if use is None else (use & ~split.truth_mask)
    known = counted & (item_rows >= 0)
    popularity = np.bincount(item_rows[known], minlength=model.n_items).astype(np.float32)
    popular = catalog_top_k(np.ones((len(split), 1), np.float32), popularity[:, None], TOP_K,
                            exclude=seen)
    truth_ids = frame["ITEM_ID"].to_numpy()[split.truth_rows]
    truth_codes = item_rows[split.truth_rows].copy()
    unknown = truth_codes < 0  # relevant items outside the catalog: never hit, still counted
    if unknown.any():
        codes, _ = pd.factorize(truth_ids[unknown])
        truth_codes[unknown] = model.n_items + codes
    return {"model": _scores(recs, split, truth_codes, model.n_items),
            "popularity": _scores(popular, split, truth_codes, model.n_items),
            "users": len(split)}


def evaluate(model: Model, frame, *, use: np.ndarray | None = None, seed: int = 0,
             fraction: float = HOLDOUT_FRACTION, exclude_seen: bool = False,
             progress: bool | None = None) -> dict:
    """Split ``frame`` (an Interactions DataFrame, e.g. ``read_interactions(path).frame``; rows
    flagged by ``use``, default all) and evaluate ``model`` on it (see the module doc).
    """
    if not hasattr(frame, "columns"):
        frame = getattr(frame, "frame", None)
        if frame is None:
            raise TypeError("evaluate needs an Interactions DataFrame or Dataset")
    missing = {"USER_ID", "ITEM_ID", "TIMESTAMP"} - {str(c) for c in frame.columns}
    if missing:
        raise ValueError(f"interactions lack column(s) {sorted(missing)}")
    split = split_interactions(frame, seed=seed, fraction=fraction, use=use)
    return evaluate_split(model, frame, split, use=use, exclude_seen=exclude_seen, progress=progress)
