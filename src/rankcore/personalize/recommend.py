"""GetRecommendations in process: catalog-wide top-K for a user, related items, promotions.

``recommend(campaign, ...)`` answers one request (a ``RecommendationResult``); ``recommend_many``
answers many user or item queries with one batched top-K call (batch jobs). A query vector is the
user's (cold-start for an unknown user, plus context, as for ranking) or, for related items, the
item's own embedding. The logit of item ``j`` is ``q . e_j + b_j`` and its score the softmax of
the logits over the *whole catalog* (``core.topk``'s exact normaliser), so scores do not sum to 1.
Filters are evaluated over the whole catalog as an allowed mask before the top-K; a promotion
takes ``ceil(k * percent / 100)`` slots for its own filter's best items, at positions drawn from
the recommendation ID. The contract and its decisions: docs/personalize.md.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import weakref
from typing import Mapping, Sequence

import numpy as np

from ..core.topk import BatchTopK, topk_batch
from ..errors import InvalidInputException, ModelFormatError, PersonalizeError
from ..model.ann import EXACT_BELOW, SIDECAR, AnnIndex
from .arguments import metadata_spec, refuse_bare_string
from .ids import new_recommendation_id

__all__ = ["RecommendationResult", "recommend", "recommend_many", "promotion_positions",
           "parse_promotions", "catalog_mask", "ENGINES", "resolve_engine", "search"]

#: Search engines: exact (the kernel's catalog scan), faiss (the ANN index saved beside the model
#: by ``rankcore index``), auto (faiss for catalogs of at least ``EXACT_BELOW`` items with an
#: index, else exact).
ENGINES = ("exact", "faiss", "auto")

_EMPTY_I64 = np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- engines

_log = logging.getLogger("rankcore.recommend")
#: model -> its loaded AnnIndex, or the reason it has none (a str); filled on first use.
_ANN: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: model -> read-only ``arange(n_items)``: the rows a catalog filter evaluates (2M rows: 2 ms to make).
_ROWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _ann_state(model):
    state = _ANN.get(model)
    if state is None:
        if model.source is None or not os.path.isfile(os.path.join(model.source, SIDECAR)):
            state = "the model has no ANN index (build one with 'rankcore index DIR')"
        else:
            try:  # read into memory, as served models are: a file changed later cannot fault it
                state = AnnIndex.load(model.source, model, mmap=False)
            except (ModelFormatError, ImportError, OSError) as exc:
                state = f"the model's ANN index cannot be used: {exc}"
                _log.warning("%s: %s", model.source, state)
        _ANN[model] = state
    return state


def ann_index(campaign):
    """The ANN index saved beside the campaign's model (``rankcore index``), or None."""
    state = _ann_state(campaign.model)
    return None if isinstance(state, str) else state


def resolve_engine(campaign, engine: str) -> str:
    """``"exact"`` or ``"faiss"`` for ``engine``.

    ``"auto"`` picks faiss when the model has an ANN index and at least ``EXACT_BELOW`` items (the
    measured crossover below which the exact scan is faster), else exact; ``"faiss"`` without a
    usable index is ``InvalidInputException``.
    """
    if engine not in ENGINES:
        raise InvalidInputException(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "exact":
        return "exact"
    state = _ann_state(campaign.model)
    if engine == "faiss":
        if isinstance(state, str):
            raise InvalidInputException(f"engine 'faiss' asked for, but {state}")
        return "faiss"
    return "faiss" if not isinstance(state, str) and campaign.model.n_items >= EXACT_BELOW else "exact"


def _exclude_row(exclude, i: int):
    if exclude is None:
        return None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
        row = exclude[i]
        return row[row >= 0]
    if isinstance(exclude, np.ndarray) or (len(exclude) and not hasattr(exclude[0], "__len__")):
        return np.asarray(exclude, dtype=np.int64)
    return np.asarray(exclude[i], dtype=np.int64)


def _ann_search(index, queries: np.ndarray, k: int, allowed, exclude) -> BatchTopK:
    """``search`` through the ANN index, one query at a time, as a ``BatchTopK``."""
    n = queries.shape[0]
    width = min(k, index.n_items)
    items = np.full((n, width), -1, dtype=np.int64)
    logits = np.full((n, width), -np.inf, dtype=np.float32)
    scores = np.zeros((n, width), dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    log_norm = np.zeros(n, dtype=np.float64)
    for i in range(n):
        mask = None if allowed is None else (allowed if allowed.ndim == 1 else allowed[i])
        one = index.topk(queries[i], k, allowed=mask, exclude=_exclude_row(exclude, i))
        c = len(one)
        items[i, :c], logits[i, :c], scores[i, :c] = one.items, one.logits, one.scores
        counts[i], log_norm[i] = c, one.log_normalizer
    return BatchTopK(items, logits, scores, counts, log_norm)


def search(campaign, queries: np.ndarray, k: int, *, allowed=None, exclude=None,
           engine: str = "auto", threads: int | None = None):
    """Top-``k`` of the catalog for each query row: a ``core.topk.BatchTopK``.

    ``allowed`` is None, one (N,) mask or (B, N) masks; ``exclude`` as ``topk_batch`` takes it.
    With the faiss engine the rows come from the ANN index (filters still hold: it never returns
    a row outside ``allowed``), their logits are exact and the normaliser is the index's estimate.
    """
    if resolve_engine(campaign, engine) == "faiss":
        allowed = None if allowed is None else np.asarray(allowed)
        return _ann_search(ann_index(campaign), np.asarray(queries, dtype=np.float32), k, allowed,
                           exclude)
    return topk_batch(queries, campaign.model.item_table, k, allowed=allowed, exclude=exclude,
                      threads=threads, backend=campaign.backend)


# --------------------------------------------------------------------------- pieces

def catalog_mask(campaign, filter, user_id, filter_values) -> np.ndarray:
    """bool (N,): the catalog rows that ``filter`` (ARN, plan or callable) keeps for ``user_id``.

    A ``ValueError`` of the plan (a missing or malformed filter value) becomes
    ``InvalidInputException``, as for ranking.
    """
    evaluate = campaign._resolve_filter(filter)
    rows = _ROWS.get(campaign.model)
    if rows is None or rows.size != campaign.model.n_items:
        rows = _ROWS[campaign.model] = np.arange(campaign.model.n_items, dtype=np.int64)
        rows.flags.writeable = False
    try:
        keep = evaluate(campaign.data, user_id, rows, filter_values or {})
    except PersonalizeError:
        raise
    except ValueError as e:
        raise InvalidInputException(str(e)) from None
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != rows.shape:
        raise ValueError(f"filter returned a mask of shape {keep.shape} for {rows.shape[0]} items")
    return keep


def parse_promotions(promotions) -> list:
    """``[(name, percent, filter, filter_values)]`` of the request's ``promotions`` (0 or 1).

    Each promotion is a mapping with ``name`` (1-63 characters), ``percentPromotedItems``
    (1-100), ``filterArn`` (or a plan / callable) and optional ``filterValues``.
    """
    if promotions is None:
        return []
    if isinstance(promotions, Mapping):
        promotions = [promotions]
    refuse_bare_string(promotions, "promotions")
    promotions = list(promotions)
    if len(promotions) > 1:
        raise InvalidInputException(f"at most 1 promotion per request, got {len(promotions)}")
    out = []
    for p in promotions:
        if not isinstance(p, Mapping):
            raise InvalidInputException("a promotion must be a mapping with name, "
                                        "percentPromotedItems and filterArn")
        unknown = set(p) - {"name", "percentPromotedItems", "filterArn", "filterValues"}
        if unknown:
            raise InvalidInputException(f"unknown promotion member(s) {sorted(unknown)}")
        name, pct, flt = p.get("name"), p.get("percentPromotedItems"), p.get("filterArn")
        if not isinstance(name, str) or not 1 <= len(name) <= 63:
            raise InvalidInputException(f"promotion name must be a string of 1 to 63 characters, "
                                        f"got {name!r}")
        if isinstance(pct, bool) or not isinstance(pct, (int, np.integer)) or not 1 <= pct <= 100:
            raise InvalidInputException(f"percentPromotedItems must be an integer from 1 to 100, "
                                        f"got {pct!r}")
        if flt is None:
            raise InvalidInputException(f"promotion {name!r} needs a filterArn")
        out.append((name, int(pct), flt, p.get("filterValues")))
    return out


def promotion_positions(recommendation_id: str, n_total: int, n_promoted: int) -> np.ndarray:
    """Sorted int64 positions (in a list of ``n_total``) of ``n_promoted`` promoted items.

    Drawn uniformly without replacement by a generator seeded with the SHA-256 of
    ``recommendation_id``, so the same ID always gives the same positions.
    """
    if not 0 <= n_promoted <= n_total:
        raise ValueError(f"n_promoted must be in [0, {n_total}], got {n_promoted}")
    seed = int.from_bytes(hashlib.sha256(recommendation_id.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n_promoted, replace=False)).astype(np.int64)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _query(campaign, user_id, item_id, context) -> tuple:
    """``(query vector float32 (d,), excluded rows)`` of a user or related-items request."""
    if item_id is None:
        if user_id is None:
            raise InvalidInputException("a recommendation request needs a userId or an itemId")
        return campaign.user_vector(user_id, context), _EMPTY_I64
    if not isinstance(item_id, str):
        raise TypeError(f"item_id must be str, got {type(item_id).__name__}")
    if user_id is not None and not isinstance(user_id, str):
        raise TypeError(f"user_id must be str, got {type(user_id).__name__}")
    if context:
        raise InvalidInputException("context applies to user recommendations (userId) only, "
                                    "not to related items (itemId)")
    row = campaign.model.item_index.get(item_id)
    if row < 0:
        raise InvalidInputException(f"Item {item_id!r} is not in the model: related items need an "
                                    "itemId the model knows")
    return campaign.model.item_table.vectors[row], np.array([row], dtype=np.int64)


# --------------------------------------------------------------------------- results

class RecommendationResult:
    """One GetRecommendations answer: catalog items, best first (promoted ones placed among them).

    Attributes
    ----------
    item_rows : int64 (n,)
        Model rows, in response order.
    scores : float64 (n,)
        Softmax over the whole catalog of each item's logit (they do not sum to 1).
    promotion_names : list of (str or None)
        The promotion that placed each item, None for the others.
    recommendation_id : str
    """

    __slots__ = ("_ids", "item_rows", "scores", "promotion_names", "recommendation_id", "_meta")

    def __init__(self, id_sequence, item_rows, scores, promotion_names, recommendation_id, meta=None):
        self._ids = id_sequence
        self.item_rows = item_rows
        self.scores = scores
        self.promotion_names = promotion_names
        self.recommendation_id = recommendation_id
        self._meta = meta

    @property
    def item_ids(self) -> list:
        ids = self._ids
        return [ids[r] for r in self.item_rows.tolist()]

    @property
    def metadata(self) -> list | None:
        """Per item ``{column: value}`` (values str, missing values omitted), or None."""
        if self._meta is None:
            return None
        per_col = [(name, col.as_strings(self.item_rows)) for name, col in self._meta]
        return [{name: vals[i] for name, vals in per_col if vals[i] is not None}
                for i in range(len(self.item_rows))]

    def __len__(self) -> int:
        return int(self.item_rows.shape[0])

    def __iter__(self):
        """``(item_id, score)`` pairs, in response order."""
        return iter(zip(self.item_ids, self.scores.tolist()))

    def to_response(self) -> dict:
        """The GetRecommendations response body (scores rounded to 7 decimals)."""
        scores = np.round(self.scores, 7).tolist()
        items = []
        for item_id, score, promo in zip(self.item_ids, scores, self.promotion_names):
            entry = {"itemId": item_id, "score": score}
            if promo is not None:
                entry["promotionName"] = promo
            items.append(entry)
        if self._meta is not None:
            for entry, meta in zip(items, self.metadata):
                entry["metadata"] = meta
        return {"itemList": items, "recommendationId": self.recommendation_id}

    def __repr__(self) -> str:
        head = ", ".join(f"{i!r}: {s:.4g}" for i, s in list(self)[:3])
        return (f"RecommendationResult([{head}{', ...' if len(self) > 3 else ''}], n={len(self)}, "
                f"recommendation_id={self.recommendation_id!r})")


# --------------------------------------------------------------------------- requests

# long: one request's steps in order (query, masks, one batched search, promotion placement)
def recommend(campaign, user_id=None, item_id=None, k: int = 25, *, context=None, filter=None,
              filter_values=None, promotions=None, metadata_columns=None,
              engine: str = "auto") -> RecommendationResult:
    """GetRecommendations for ``user_id`` (user recommendations) or ``item_id`` (related items).

    See ``Campaign.recommend`` for the parameters. With ``item_id`` the query is the item's
    embedding, the item itself is never returned, and ``user_id`` (optional) is only what the
    filters see as the current user.
    """
    k = _check_k(k)
    promos = parse_promotions(promotions)
    meta = metadata_spec(campaign.model.item_columns, metadata_columns) if metadata_columns else None
    query, exclude = _query(campaign, user_id, item_id, context)
    resolve_engine(campaign, engine)
    allowed = None if filter is None else catalog_mask(campaign, filter, user_id, filter_values)
    rid = new_recommendation_id()
    n_promo = 0
    if promos:
        name, pct, pfilter, pvalues = promos[0]
        n_promo = min(k, math.ceil(k * pct / 100))
        pmask = catalog_mask(campaign, pfilter, user_id, pvalues)
        masks = np.stack([np.ones(campaign.model.n_items, dtype=bool) if allowed is None else allowed,
                          pmask])
        # request 0: the regular items (k of them, so k - promoted remain once those are
        # removed); request 1: the promotion's best items
        res = search(campaign, np.stack([query, query]), k, allowed=masks, exclude=exclude,
                     engine=engine)
        regular, promoted = res[0], res[1]
        p_rows, p_scores = promoted.items[:n_promo], promoted.scores[:n_promo]
        keep = ~np.isin(regular.items, p_rows)
        r_rows = regular.items[keep][:k - p_rows.shape[0]]
        r_scores = regular.scores[keep][:k - p_rows.shape[0]]
        n = p_rows.shape[0] + r_rows.shape[0]
        at = promotion_positions(rid, n, p_rows.shape[0])
        is_promo = np.zeros(n, dtype=bool)
        is_promo[at] = True
        rows = np.empty(n, dtype=np.int64)
        scores = np.empty(n, dtype=np.float64)
        rows[is_promo], scores[is_promo] = p_rows, p_scores
        rows[~is_promo], scores[~is_promo] = r_rows, r_scores
        names = [name if p else None for p in is_promo.tolist()]
    else:
        one = search(campaign, query[None, :], k, allowed=allowed, exclude=exclude, engine=engine)[0]
        rows, scores = one.items, one.scores
        names = [None] * rows.shape[0]
    return RecommendationResult(campaign.model.item_ids, rows, scores, names, rid, meta)


def recommend_many(campaign, user_ids: Sequence, item_ids: Sequence, k: int, *, contexts=None,
                   filter=None, filter_values=None, threads: int | None = None) -> tuple:
    """Many requests in one top-K call (batch jobs): ``(rows, scores, counts, errors)``.

    Request i is user ``user_ids[i]`` when ``item_ids[i]`` is None, else related items of
    ``item_ids[i]``; ``contexts[i]`` and ``filter_values[i]`` are its own (the ``filter`` is
    shared). ``rows`` int64 (n, k) and ``scores`` float64 (n, k) hold request i's answer in their
    first ``counts[i]`` entries; ``errors`` maps a request that cannot be served to its exception
    (``counts`` 0 there). Per-request masks are (n, N) bytes: callers bound n.
    """
    k = _check_k(k)
    n = len(user_ids)
    if len(item_ids) != n:
        raise ValueError(f"{n} user IDs but {len(item_ids)} item IDs")
    n_items = campaign.model.n_items
    queries = np.zeros((n, campaign.model.dim), dtype=np.float32)
    exclude = np.full((n, 1), -1, dtype=np.int64)
    masks = None if filter is None else np.zeros((n, n_items), dtype=bool)
    errors: dict = {}
    for i in range(n):
        try:
            ctx = contexts[i] if contexts is not None else None
            q, ex = _query(campaign, user_ids[i], item_ids[i], ctx)
            if masks is not None:
                fv = filter_values[i] if filter_values is not None else None
                masks[i] = catalog_mask(campaign, filter, user_ids[i], fv)
        except (ValueError, TypeError, LookupError) as exc:
            errors[i] = exc
            continue
        queries[i] = q
        if ex.shape[0]:
            exclude[i, 0] = ex[0]
    if errors:
        if masks is None:
            masks = np.ones((n, n_items), dtype=bool)
        masks[list(errors)] = False
    if n == 0:
        return (np.zeros((0, k), dtype=np.int64), np.zeros((0, k)), np.zeros(0, dtype=np.int64),
                errors)
    res = topk_batch(queries, campaign.model.item_table, k, allowed=masks, exclude=exclude,
                     threads=threads, backend=campaign.backend)
    counts = np.asarray(res.counts).copy()
    if errors:
        counts[list(errors)] = 0
    return np.asarray(res.items), np.asarray(res.scores), counts, errors

