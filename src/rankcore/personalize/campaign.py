"""``Campaign``: a model served with GetPersonalizedRanking semantics.

``rank`` answers one request (a ``RankingResult``), ``rank_batch`` many with one kernel call, and
``rank_many`` many more for batch jobs (flat arrays, no per-request objects). Filters are
registered by name (``create_filter``) and see the model through ``CampaignData``, which also
holds the interactions of ``put_events``. The library imposes no item limit; ``Client`` applies
the service limits. The behaviour (scores, unknown items and users, duplicates, context,
metadata, errors) is specified in docs/personalize.md.
"""
from __future__ import annotations

import threading
from itertools import chain
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..core import api as _core_api
from ..errors import InvalidInputException, ResourceNotFoundException
from ..filters import compile_filter
from .arguments import id_list, metadata_spec, parse_request, refuse_bare_string
from .candidates import apply_filter, dedupe, dedupe_many, without_failed
from .data import CampaignData
from .events import EventFeed, dataset_arn
from .ids import DEFAULT_ACCOUNT, DEFAULT_REGION, campaign_arn, check_name
from .ids import filter_arn as _filter_arn
from .ids import new_recommendation_id
from .live import LiveState
from .recommend import RecommendationResult, recommend
from .results import RankingResult

__all__ = ["Campaign"]

_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)
#: What a per-request failure inside ``rank_many`` may raise (kept per request, not raised).
_REQUEST_ERRORS = (ValueError, TypeError, LookupError)


class Campaign:
    """A model served with GetPersonalizedRanking semantics.

    Parameters
    ----------
    model : rankcore.Model
    name : str
        Campaign name (1-63 of ``[a-zA-Z0-9-_]``, starting alphanumeric); default ``"rankcore"``.
    region, account : str
        Used in ``arn``: ``arn:aws:personalize:<region>:<account>:campaign/<name>``
        (defaults ``us-east-1`` and ``000000000000``).
    backend : str, optional
        Kernel backend passed to ``rankcore.rank``/``rank_batch``.
    event_store : EventStore, optional
        Where ``put_events``, ``put_items`` and ``put_users`` are written (durably) before they
        take effect; default: kept in memory. See ``event_store``.
    tracking_id : str, optional
        The PutEvents tracking ID of this campaign (default: a UUID derived from its ARN).

    Attributes
    ----------
    filters : dict
        Filter ARN -> plan (an object with ``evaluate(data, user_id, item_rows, filter_values)``
        returning a keep-mask, or such a callable); ``rank(filter=<arn>)`` looks ARNs up here.
    data : CampaignData
        What filter plans evaluate against.
    """

    def __init__(self, model, name: str = "rankcore", *, region: str = DEFAULT_REGION,
                 account: str = DEFAULT_ACCOUNT, backend: str | None = None, event_store=None,
                 tracking_id: str | None = None):
        self.model = model
        self.name = check_name(name, "campaign name")
        self.arn = campaign_arn(name, region, account)
        self.region = region
        self.account = account
        self.backend = backend
        self.filters: dict = {}
        self._filters_lock = threading.Lock()  # writers of ``filters``; readers take no lock
        self.data = CampaignData(model)
        self._rank_fn = _core_api.rank
        self._rank_batch_fn = _core_api.rank_batch
        self._table = model.item_table
        self._lookup = model.item_index.lookup
        self._users = np.asarray(model.user_embeddings)  # plain ndarray for rank_many's gather
        self._cold = np.asarray(model.cold_start)
        self._item_columns = model.item_columns
        self.live = LiveState(self)  # what recorded events, items and users change
        self._deltas = self.live.deltas
        self.tracking_id = tracking_id
        self._feed = None
        if event_store is not None:
            EventFeed(event_store).attach(self, tracking_id)

    def __repr__(self) -> str:
        return f"Campaign(arn={self.arn!r}, model={self.model!r})"

    # ----------------------------------------------------------------- pieces
    def user_vector(self, user_id: str, context: Mapping[str, str] | None = None) -> np.ndarray:
        """float32 (dim,): ``Model.user_vector`` with a request's checks.

        ``user_id`` must be a str (``TypeError``); ``context`` a mapping of str field to str value,
        fields case-insensitive. An unknown value adds nothing; an unknown field or a non-str
        value raises ``InvalidInputException``.
        """
        if not isinstance(user_id, str):
            raise TypeError(f"user_id must be str, got {type(user_id).__name__}")
        delta = self._deltas.get(user_id)  # recent events move the vector (see live.LiveState)
        if not context:
            u = self.model.user_vector(user_id)
            return u if delta is None else u + delta
        if not isinstance(context, Mapping):
            raise InvalidInputException("context must be a mapping of field to value")
        for field, value in context.items():
            if not isinstance(field, str):
                raise self._unknown_context_field(field)
            if not isinstance(value, str):
                raise InvalidInputException(f"context value for {field!r} must be a string")
        try:
            u = self.model.user_vector(user_id, context)
        except KeyError as exc:  # Model.user_vector: a field the model lacks
            raise self._unknown_context_field(exc.args[0]) from None
        return u if delta is None else u + delta

    def _unknown_context_field(self, field) -> InvalidInputException:
        known = ", ".join(self.model.context) or "none"
        return InvalidInputException(
            f"Unknown context field {field!r} (the model's context fields: {known})")

    def _resolve_filter(self, filter):
        """The ``evaluate`` callable of a filter ARN, plan object or callable."""
        if isinstance(filter, str):
            plan = self.filters.get(filter)
            if plan is None:
                raise ResourceNotFoundException(f"Resource {filter} does not exist.")
            filter = plan
        evaluate = getattr(filter, "evaluate", None)  # a plan, or a bare callable
        if evaluate is None:
            if not callable(filter):
                raise TypeError("filter must be a filter ARN, an object with .evaluate() or a callable")
            evaluate = filter
        return evaluate

    def _filter(self, filter, user_id, pos, krows, unknown, filter_values) -> tuple:
        """``candidates.apply_filter`` with ``filter`` resolved against this campaign."""
        return apply_filter(self._resolve_filter(filter), self.data, user_id, pos, krows, unknown,
                            filter_values)

    # ----------------------------------------------------------------- filters and events
    def filter_arn(self, name: str) -> str:
        """ARN of the filter ``name``: ``arn:aws:personalize:<region>:<account>:filter/<name>``."""
        return _filter_arn(name, self.region, self.account)

    def create_filter(self, name: str, expression: str) -> str:
        """Compile a Personalize filter expression, register it and return its ARN.

        The expression is parsed once (``rankcore.filters.compile_filter``) and checked against
        this model's schema (unknown fields, comparisons on non-numeric fields), like
        Personalize's CreateFilter. Creating a filter under an existing name replaces it.

        Raises
        ------
        rankcore.filters.FilterSyntaxError
            The expression does not parse (a ``ValueError``, with the position).
        ValueError
            A bad name, or an expression that does not fit the model.
        """
        check_name(name, "filter name")
        plan = compile_filter(expression)
        plan.validate(self.data)
        arn = self.filter_arn(name)
        with self._filters_lock:  # copy-on-write: readers see the old or the new dict, whole
            filters = dict(self.filters)
            filters[arn] = plan
            self.filters = filters
        return arn

    def delete_filter(self, filter_arn: str) -> None:
        """Remove a filter (``ResourceNotFoundException`` when there is none with that ARN)."""
        with self._filters_lock:  # as in create_filter
            if filter_arn not in self.filters:
                raise ResourceNotFoundException(f"Resource {filter_arn} does not exist.")
            filters = dict(self.filters)
            del filters[filter_arn]
            self.filters = filters

    # long: the docstrings of the three Personalize calls of the events API
    def put_events(self, user_id: str | None, events: Sequence[Mapping], *,
                   session_id: str | None = None) -> None:
        """Record events (Personalize's PutEvents): filters, metadata and scores see them next call.

        Parameters
        ----------
        user_id : str or None
            None for an anonymous session (then ``session_id`` is required; a ranking for the
            user ID ``session_id`` gets the session's personalization).
        events : list of dict
            1 to 10, each with ``eventType`` (str) and ``sentAt`` (epoch seconds, or a
            ``datetime``; naive taken as UTC), optionally ``itemId``, ``eventId``,
            ``eventValue``, ``properties`` (a JSON object string), ``recommendationId``,
            ``impression``. Items the model does not know are recorded but never match a filter.
        session_id : str, optional
            Default ``user_id``. A session first seen anonymous and later with a user ID counts
            for that user from then on.

        Written to ``event_store`` when one is set (returns once committed), else kept in memory.
        Thread-safe while other threads rank. The whole request is checked before anything is
        recorded, so a bad event records nothing (``InvalidInputException`` naming it).
        """
        self.feed.put_events(self.tracking_id, user_id, session_id if session_id is not None else user_id,
                             events)

    def put_items(self, items: Sequence[Mapping]) -> None:
        """Record item metadata (PutItems): 1 to 10 ``{"itemId", "properties": JSON string}``.

        Items filters and ``metadata_columns`` see the new values; an item the model does not
        know has no embedding and stays unknown to ranking (its metadata is kept by ID only).
        """
        self.feed.put_items(self.items_dataset_arn, items)

    def put_users(self, users: Sequence[Mapping]) -> None:
        """Record user metadata (PutUsers): 1 to 10 ``{"userId", "properties": JSON string}``;
        ``CurrentUser`` filter conditions see it (also for users the model does not know)."""
        self.feed.put_users(self.users_dataset_arn, users)

    @property
    def feed(self) -> EventFeed:
        """The ``EventFeed`` that writes and applies this campaign's events (in memory by default)."""
        if self._feed is None:
            EventFeed().attach(self, self.tracking_id)
        return self._feed

    @property
    def event_store(self):
        """The event store written by the put methods (None: in memory). Setting one replays what
        it holds into this campaign; events recorded in memory before are not carried over."""
        return None if self._feed is None or self._feed.in_memory else self._feed.store

    @event_store.setter
    def event_store(self, store) -> None:
        if store is None:
            EventFeed().attach(self, self.tracking_id)
        else:
            EventFeed(store).attach(self, self.tracking_id)

    @property
    def items_dataset_arn(self) -> str:
        """The dataset ARN PutItems takes for this campaign."""
        return dataset_arn(self, "ITEMS")

    @property
    def users_dataset_arn(self) -> str:
        return dataset_arn(self, "USERS")

    # ----------------------------------------------------------------- serving
    def rank(self, user_id: str, item_ids: Sequence[str], *, context: Mapping[str, str] | None = None,
             filter=None, filter_values: Mapping[str, str] | None = None,
             metadata_columns=None) -> RankingResult:
        """Rank ``item_ids`` for ``user_id`` (GetPersonalizedRanking, see docs/personalize.md).

        Parameters
        ----------
        user_id : str
        item_ids : sequence of str
            Any length (the service's 500 limit is the ``Client``'s business); a bare str or
            bytes raises ``TypeError``.
        context : mapping of str to str, optional
        filter : filter ARN (looked up in ``self.filters``), plan object or callable, optional
            ``evaluate(self.data, user_id, item_rows int64 (m,), filter_values)`` -> bool (m,)
            keep-mask over the distinct items (row -1 stands for the unknown ones); the rest are
            dropped and the scores renormalised over what remains.
        filter_values : mapping of str to str, optional
        metadata_columns : ``{"ITEMS": [names]}`` or a list of names, optional

        Returns
        -------
        RankingResult
        """
        item_ids = id_list(item_ids, "item_ids")
        meta = metadata_spec(self._item_columns, metadata_columns) if metadata_columns else None
        u = self.user_vector(user_id, context)
        rows = self._lookup(item_ids)
        pos, krows, unknown = dedupe(item_ids, rows)
        if filter is not None:
            pos, krows, unknown = self._filter(filter, user_id, pos, krows, unknown, filter_values)
        rid = new_recommendation_id()
        if krows.shape[0] == 0:
            return RankingResult(item_ids, _EMPTY_I64, _EMPTY_F32, _EMPTY_I64, unknown, rid, meta)
        r = self._rank_fn(u, self._table, krows, backend=self.backend)
        positions = r.positions if pos is None else pos[r.positions]
        return RankingResult(item_ids, positions, r.scores, r.items, unknown, rid, meta)

    def recommend(self, user_id: str | None = None, item_id: str | None = None, k: int = 25, *,
                  context=None, filter=None, filter_values=None, promotions=None,
                  metadata_columns=None, engine: str = "auto") -> RecommendationResult:
        """GetRecommendations: the catalog's best ``k`` items (see docs/personalize.md).

        ``user_id`` alone: user recommendations (cold-start vector for an unknown user, plus
        ``context``). ``item_id``: related items (the item's embedding as the query, the item
        itself never returned; an unknown item is ``InvalidInputException``); ``user_id`` is then
        optional and only the filters' current user. ``filter``/``filter_values`` as in ``rank``,
        evaluated over the whole catalog before the top-K. ``promotions``: at most one
        ``{"name", "percentPromotedItems", "filterArn", "filterValues"?}``. ``engine``: "exact",
        "faiss" or "auto". Implemented in ``personalize.recommend``.
        """
        return recommend(self, user_id, item_id, k, context=context, filter=filter,
                         filter_values=filter_values, promotions=promotions,
                         metadata_columns=metadata_columns, engine=engine)

    def rank_batch(self, requests: Iterable) -> list:
        """Serve many requests with one batched kernel call.

        Each request is a tuple ``(user_id, item_ids)`` / ``(user_id, item_ids, context)`` or a
        dict with ``user_id``, ``item_ids`` and optionally ``context``, ``filter``,
        ``filter_values``, ``metadata_columns`` (Personalize's camelCase names ``userId``,
        ``inputList``/``itemList``, ``filterArn``, ... are accepted too). Returns one
        ``RankingResult`` per request, in order; an invalid request (item IDs given as a bare
        str, for one) raises for the whole batch.
        """
        parsed = [parse_request(r) for r in requests]
        if not parsed:
            return []
        lists = [p["item_ids"] for p in parsed]
        rows_all = self._lookup(list(chain.from_iterable(lists)))
        bounds = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in lists], out=bounds[1:])
        users, cands, prepared = [], [], []
        for i, p in enumerate(parsed):
            columns = p.get("metadata_columns")
            meta = metadata_spec(self._item_columns, columns) if columns else None
            u = self.user_vector(p["user_id"], p.get("context"))
            pos, krows, unknown = dedupe(p["item_ids"], rows_all[bounds[i]:bounds[i + 1]])
            if p.get("filter") is not None:
                pos, krows, unknown = self._filter(p["filter"], p["user_id"], pos, krows, unknown,
                                                   p.get("filter_values"))
            users.append(u)
            cands.append(krows)
            prepared.append((pos, unknown, meta))
        offsets = np.zeros(len(cands) + 1, dtype=np.int64)
        np.cumsum([c.shape[0] for c in cands], out=offsets[1:])
        res = self._rank_batch_fn(np.stack(users), self._table, np.concatenate(cands), offsets,
                                  backend=self.backend)
        ro = np.asarray(res.offsets)
        out = []
        for i, (p, (pos, unknown, meta)) in enumerate(zip(parsed, prepared)):
            a, b = int(ro[i]), int(ro[i + 1])
            local = res.positions[a:b]
            positions = local if pos is None else pos[local]
            out.append(RankingResult(p["item_ids"], positions, res.scores[a:b], res.items[a:b],
                                     unknown, new_recommendation_id(), meta))
        return out

    # long: most of it is the docstring of the batch jobs' entry point
    def rank_many(self, user_ids: Sequence[str], flat_ids: Sequence[str], bounds: np.ndarray, *,
                  contexts: Sequence | None = None, filter=None,
                  filter_values: Sequence | None = None, threads: int | None = None) -> tuple:
        """Rank many requests in one kernel call and return flat arrays (batch jobs' entry point).

        Request i is user ``user_ids[i]`` with items ``flat_ids[bounds[i]:bounds[i+1]]``, context
        ``contexts[i]`` and the shared ``filter`` given ``filter_values[i]``. Each is ranked with
        ``rank``'s semantics (see docs/personalize.md), but nothing is built per request (no
        ``RankingResult``, no recommendation ID): lookups, user gathers and duplicate detection
        run over the whole call. Service limits are not checked, as in ``rank``.

        Parameters
        ----------
        user_ids : sequence of str, length n
        flat_ids : list of str
            Every request's item IDs, concatenated.
        bounds : int array (n + 1,)
            Request boundaries in ``flat_ids``: ``bounds[0] == 0``, non-decreasing,
            ``bounds[n] == len(flat_ids)``.
        contexts : sequence of (mapping or None), length n, optional
        filter : filter ARN (in ``self.filters``), plan object or callable, optional
            As ``rank``'s ``filter``, applied to every request.
        filter_values : sequence of (mapping or None), length n, optional
            Request i's filter values.
        threads : int, optional
            Kernel threads (default: the backend's choice).

        Returns
        -------
        order : int64 (m,)
            Indices into ``flat_ids`` of the scored items, request after request, each request's
            highest score first.
        scores : float32 (m,)
            Their scores; those of one request sum to 1.
        offsets : int64 (n + 1,)
            Request i's entries are ``order[offsets[i]:offsets[i+1]]`` and the same slice of
            ``scores``.
        unknown : dict
            Request index -> its unknown item IDs in input order (absent: none are returned).
        errors : dict
            Request index -> the exception ``rank`` would raise for it (a bad context or filter
            value, an unknown filter); such a request has no entries and no unknown IDs.

        Raises
        ------
        TypeError
            An item ID is not a str (for the whole call), or ``user_ids``, ``flat_ids``,
            ``contexts`` or ``filter_values`` is a bare str or bytes.
        ValueError
            ``bounds`` does not describe ``len(user_ids)`` requests over ``flat_ids``.
        """
        for name, value in (("user_ids", user_ids), ("flat_ids", flat_ids),
                            ("contexts", contexts), ("filter_values", filter_values)):
            refuse_bare_string(value, name)
        n_req = len(user_ids)
        bounds = np.asarray(bounds, dtype=np.int64)
        lens = np.diff(bounds)
        if (bounds.shape != (n_req + 1,) or bounds[0] != 0 or bounds[-1] != len(flat_ids)
                or (lens < 0).any()):
            raise ValueError(f"bounds must be {n_req + 1} non-decreasing offsets from 0 to "
                             f"len(flat_ids)={len(flat_ids)}")
        if n_req == 0:
            return _EMPTY_I64, _EMPTY_F32, np.zeros(1, dtype=np.int64), {}, {}
        rows = self._lookup(flat_ids)
        users, errors = self._user_matrix(user_ids, contexts)
        line_of = np.repeat(np.arange(n_req, dtype=np.int64), lens)
        keep, unknown = dedupe_many(flat_ids, rows, bounds, line_of)
        if filter is not None:
            cpos = self._filter_many(filter, user_ids, filter_values, rows, bounds, keep,
                                     unknown, errors)
        else:
            cpos = without_failed(keep, bounds, unknown, errors)
        if cpos is None:  # every item known, distinct and kept
            cands, offsets = rows, bounds
        else:
            cands = rows[cpos]
            offsets = np.zeros(n_req + 1, dtype=np.int64)
            np.cumsum(np.bincount(line_of[cpos], minlength=n_req), out=offsets[1:])
        res = self._rank_batch_fn(users, self._table, cands, offsets, backend=self.backend,
                                  threads=threads)
        ro = np.asarray(res.offsets)
        # request-local candidate positions -> indices into flat_ids
        seg = np.repeat(np.arange(n_req, dtype=np.int64), np.diff(ro))
        order = offsets[seg] + np.asarray(res.positions)
        if cpos is not None:
            order = cpos[order]
        return order, np.asarray(res.scores), ro, unknown, errors

    def _user_matrix(self, user_ids: Sequence[str], contexts: Sequence | None) -> tuple:
        """``(users float32 (n, dim), errors)`` for ``rank_many``: one gather for the plain
        users, ``user_vector`` for those with a context (a bad one goes to ``errors``)."""
        urows = self.model.user_index.lookup(user_ids)
        cold = self._cold
        users = np.empty((len(user_ids), cold.shape[0]),
                         dtype=np.result_type(self._users.dtype, cold.dtype))
        is_known_user = urows >= 0
        if is_known_user.all():
            np.take(self._users, urows, axis=0, out=users)
        else:
            users[:] = cold
            users[is_known_user] = self._users[urows[is_known_user]]
        deltas = self._deltas
        if deltas:  # users and sessions whose recent events moved their vectors
            for i, uid in enumerate(user_ids):
                d = deltas.get(uid)
                if d is not None and not (contexts and contexts[i]):
                    users[i] += d
        errors: dict = {}
        for i, ctx in enumerate(contexts or ()):
            if ctx:
                try:
                    users[i] = self.user_vector(user_ids[i], ctx)
                except _REQUEST_ERRORS as exc:
                    errors[i] = exc
        return users, errors

    def _filter_many(self, filter, user_ids, filter_values, rows, bounds, keep, unknown: dict,
                     errors: dict) -> np.ndarray:
        """Flat positions of ``rank_many``'s candidates after ``filter``; updates ``unknown`` and
        ``errors`` in place (a request whose filter fails gets an error and no items)."""
        parts = []
        for i in range(len(user_ids)):
            if i in errors:
                continue
            a, b = int(bounds[i]), int(bounds[i + 1])
            pos = np.flatnonzero(keep[a:b]) if keep is not None else np.arange(b - a, dtype=np.int64)
            values = filter_values[i] if filter_values is not None else None
            try:
                pos, _, unk = self._filter(filter, user_ids[i], pos, rows[a:b][pos],
                                           unknown.get(i, []), values)
            except _REQUEST_ERRORS as exc:
                errors[i] = exc
                continue
            if unk:
                unknown[i] = unk
            else:
                unknown.pop(i, None)
            parts.append(pos + a)
        for i in errors:
            unknown.pop(i, None)
        return np.concatenate(parts) if parts else _EMPTY_I64
