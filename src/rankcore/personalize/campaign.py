"""Personalize semantics in-process: ``Campaign`` (serving object) and ``Client`` (boto3 stand-in).

``Campaign.rank(user_id, item_ids, ...)`` behaves like GetPersonalizedRanking (PERSONALIZE_API.md
section 4):

* scores are a softmax over the known, distinct, unfiltered input items (they sum to 1), highest
  first, ties in input order;
* items the model does not know follow, in input order, without a score; they have no metadata
  and no interactions, so an INCLUDE filter removes them and an EXCLUDE filter keeps them;
* an unknown user is served from the model's cold-start vector (plus item bias), never an error;
* duplicate IDs keep their first occurrence; an empty list gives an empty ranking;
* ``context`` adds ``model.context[FIELD][value]`` to the user vector; an unknown value adds
  nothing, an unknown field raises ``InvalidInputException``;
* ``metadata_columns`` returns item metadata as strings (unknown column: ``InvalidInputException``);
* every call gets a new ``recommendation_id`` ``RID-<uuid4>``.

The library imposes no item limit; ``Client`` enforces the service limits (section 3) through
``rankcore.validate_request``. Exceptions are ``PersonalizeError`` subclasses that are
also standard Python exceptions: ``InvalidInputException`` is a ``ValueError``,
``ResourceNotFoundException`` a ``LookupError``. ``client.exceptions.*`` are further subclasses
that also derive from ``botocore.exceptions.ClientError`` when botocore is installed, so code that
catches either kind runs unchanged.
"""
from __future__ import annotations

import random
import re
import threading
from itertools import chain
from operator import itemgetter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..core import native
from ..errors import DEFAULT_OPERATION as _OPERATION
from ..errors import InvalidInputException, PersonalizeError, ResourceNotFoundException
from ..core import api as _core_api
from ..filters import InteractionHistory, compile_filter
from ..model.model import RECENT_INTERACTIONS_PER_TYPE
from .response import ranking_entries
from .validate import validate_request

__all__ = ["Campaign", "CampaignData", "RankingResult", "Client", "PersonalizeError",
           "InvalidInputException", "ResourceNotFoundException", "DEFAULT_REGION",
           "DEFAULT_ACCOUNT"]

#: Defaults for ``Campaign.arn`` (the account is LocalStack's conventional dummy account).
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}")


def _client_exception_classes():
    """``client.exceptions``: our errors, also ``botocore.exceptions.ClientError`` when available."""
    try:
        from botocore.exceptions import ClientError
    except ImportError:  # pragma: no cover - botocore is optional
        ClientError = None

    ns: dict = {"PersonalizeError": PersonalizeError}
    for base in (InvalidInputException, ResourceNotFoundException):
        if ClientError is None:
            ns[base.__name__] = base
            continue

        def __init__(self, message="", operation_name=_OPERATION, _code=base.code, _status=base.http_status):
            ClientError.__init__(self, {"Error": {"Code": _code, "Message": message},
                                        "ResponseMetadata": {"HTTPStatusCode": _status}},
                                 operation_name)
            self.message = message

        def __reduce__(self):
            return type(self), (self.message, self.operation_name)

        ns[base.__name__] = type(base.__name__, (base, ClientError),
                                 {"__init__": __init__, "__str__": Exception.__str__,
                                  "__reduce__": __reduce__, "__module__": __name__,
                                  "__qualname__": f"ClientExceptions.{base.__name__}"})
    ns["ClientError"] = ClientError if ClientError is not None else PersonalizeError
    return type("ClientExceptions", (), ns)


# --------------------------------------------------------------------------- ids
_UUID4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


#: Native one-pass check that every looked-up row is known and distinct (int64 rows only).
_all_known_distinct = native.function("all_known_distinct")


def new_uuid() -> str:
    """A random (version 4) UUID string, several times cheaper than ``str(uuid.uuid4())``.

    Drawn from the ``random`` module's global generator, which is seeded from the OS and
    reseeded in forked children, so server workers never repeat each other's IDs.
    """
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_recommendation_id() -> str:
    """``RID-<uuid4>``, new for every call."""
    return "RID-" + new_uuid()


# --------------------------------------------------------------------------- results
def _take(seq: Sequence, positions: list) -> list:
    """``[seq[p] for p in positions]`` at C speed."""
    n = len(positions)
    if n > 1:
        return list(itemgetter(*positions)(seq))
    return [seq[positions[0]]] if n else []


class RankingResult:
    """One ranking: scored items (highest first), then the unknown items.

    Attributes
    ----------
    scores : float32 (n_scored,)
        Softmax scores of the scored items, descending, summing to 1.
    item_rows : int64 (n_scored,)
        Model rows of the scored items.
    positions : int64 (n_scored,)
        Positions of the scored items in the input list.
    recommendation_id : str
        ``RID-<uuid4>``.
    """

    __slots__ = ("_input", "positions", "scores", "item_rows", "unknown_item_ids",
                 "recommendation_id", "_meta")

    def __init__(self, input_ids: Sequence[str], positions: np.ndarray, scores: np.ndarray,
                 item_rows: np.ndarray, unknown_item_ids: list, recommendation_id: str,
                 metadata_columns: list | None = None):
        self._input = input_ids
        self.positions = positions
        self.scores = scores
        self.item_rows = item_rows
        self.unknown_item_ids = unknown_item_ids
        self.recommendation_id = recommendation_id
        self._meta = metadata_columns

    @property
    def scored_item_ids(self) -> list:
        """IDs of the scored items, highest score first."""
        return _take(self._input, self.positions.tolist())

    @property
    def item_ids(self) -> list:
        """All returned IDs: scored items, then unknown items in input order."""
        return self.scored_item_ids + list(self.unknown_item_ids)

    @property
    def metadata(self) -> list | None:
        """Per scored item ``{column: value}`` (values str, missing values omitted), or None."""
        if self._meta is None:
            return None
        rows = self.item_rows
        per_col = [(name, col.as_strings(rows)) for name, col in self._meta]
        out = []
        for i in range(len(rows)):
            out.append({name: vals[i] for name, vals in per_col if vals[i] is not None})
        return out

    def __len__(self) -> int:
        return len(self.positions) + len(self.unknown_item_ids)

    def __iter__(self):
        """``(item_id, score)`` pairs; unknown items have score ``None``."""
        yield from zip(self.scored_item_ids, self.scores.tolist())
        for item in self.unknown_item_ids:
            yield item, None

    def to_response(self) -> dict:
        """The GetPersonalizedRanking response body (scores rounded to 7 decimals)."""
        ids = self._input if isinstance(self._input, (list, tuple)) else list(self._input)
        ranking = ranking_entries(ids, self.positions, self.scores, list(self.unknown_item_ids))
        if self._meta is not None:
            for entry, meta in zip(ranking, self.metadata):
                entry["metadata"] = meta
        return {"personalizedRanking": ranking, "recommendationId": self.recommendation_id}

    def __repr__(self) -> str:
        head = ", ".join(f"{i!r}: {s:.4g}" for i, s in list(zip(self.scored_item_ids,
                                                                 self.scores.tolist()))[:3])
        return (f"RankingResult([{head}{', ...' if len(self.positions) > 3 else ''}], "
                f"scored={len(self.positions)}, unknown={len(self.unknown_item_ids)}, "
                f"recommendation_id={self.recommendation_id!r})")


# --------------------------------------------------------------------------- filter data
class CampaignData:
    """What filter plans see: metadata columns, user rows and recent interactions.

    ``recent_interactions`` merges the model's stored history with interactions recorded since
    (``record_interactions``, thread-safe; the hook for PutEvents).
    """

    def __init__(self, model):
        self.model = model
        self.item_columns = model.item_columns
        self.user_columns = model.user_columns
        self._lock = threading.Lock()
        self._events: dict = {}  # user_id -> list of (timestamp, item_row, event_type)
        self._version: dict = {}  # user_id -> number of record_interactions calls
        self._merged: dict = {}  # user_id -> (version, recent interactions at the default limit)
        self._histories: dict = {}  # user_id -> (model, version, filters.InteractionHistory)

    def user_row(self, user_id: str) -> int:
        return self.model.user_row(user_id)

    def item_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.model.item_rows(item_ids)

    def record_interactions(self, user_id: str, item_rows: Iterable[int],
                            event_types: Iterable[str], timestamps: Iterable[float]) -> None:
        """Add interactions for ``user_id`` (item rows, event types, epoch seconds)."""
        new = [(float(t), int(r), str(e).lower())
               for r, e, t in zip(item_rows, event_types, timestamps)]
        with self._lock:
            self._events.setdefault(user_id, []).extend(new)
            self._version[user_id] = self._version.get(user_id, 0) + 1
            self._merged.pop(user_id, None)
            self._histories.pop(user_id, None)

    def recent_interactions(self, user_id: str, limit: int | None = None) -> tuple:
        """``(item_rows int64 (m,), event_types list[str])``, at most ``limit`` (default 100)
        most recent per event type, oldest first."""
        default = limit is None or limit == RECENT_INTERACTIONS_PER_TYPE
        if default:
            cached = self._merged.get(user_id)
            if cached is not None:
                return cached[1]
        limit = RECENT_INTERACTIONS_PER_TYPE if limit is None else limit
        with self._lock:
            extra = list(self._events.get(user_id, ()))
            version = self._version.get(user_id, 0)
        if not extra:
            return self.model.recent_interactions(user_id, limit)
        result = self._merge(user_id, extra, limit)
        if default:  # cache the merge until the next record_interactions for this user
            with self._lock:
                if self._version.get(user_id, 0) == version:
                    self._merged[user_id] = (version, result)
        return result

    #: Users whose ``interaction_history`` is kept (oldest dropped first).
    MAX_CACHED_HISTORIES = 2048

    def interaction_history(self, user_id: str):
        """``recent_interactions(user_id)`` as a ``filters.InteractionHistory``, cached per user
        until the next ``record_interactions`` for that user (or a new ``model``)."""
        entry = self._histories.get(user_id)
        if entry is not None and entry[0] is self.model and entry[1] == self._version.get(user_id, 0):
            return entry[2]

        model = self.model
        with self._lock:
            version = self._version.get(user_id, 0)
        hist = InteractionHistory(*self.recent_interactions(user_id))
        with self._lock:
            if self._version.get(user_id, 0) == version and self.model is model:
                cache = self._histories
                cache.pop(user_id, None)
                while len(cache) >= self.MAX_CACHED_HISTORIES:
                    del cache[next(iter(cache))]
                cache[user_id] = (model, version, hist)
        return hist

    def _merge(self, user_id: str, extra: list, limit: int) -> tuple:
        """Stored history and recorded events of one user, by time, ``limit`` per event type."""
        h = self.model.history
        row = self.model.user_row(user_id)
        if row >= 0:  # timestamps of the stored part, for a merge by time
            a, b = int(h.offsets[row]), int(h.offsets[row + 1])
            stored = list(zip(np.asarray(h.timestamps[a:b]).tolist(), np.asarray(h.items[a:b]).tolist(),
                              [h.event_types[c] for c in np.asarray(h.event_codes[a:b]).tolist()]))
        else:
            stored = []
        merged = sorted(stored + extra, key=lambda e: e[0])  # stable: stored first on ties
        counts: dict = {}
        keep = []
        for ts, item, ev in reversed(merged):
            c = counts.get(ev, 0)
            if c < limit:
                counts[ev] = c + 1
                keep.append((item, ev))
        keep.reverse()
        rows = np.array([k[0] for k in keep], dtype=np.int64)
        rows.flags.writeable = False  # shared by later calls through the cache
        return rows, [k[1] for k in keep]


# --------------------------------------------------------------------------- campaign
_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)
_REQUEST_ALIASES = {"user_id": "user_id", "userId": "user_id", "item_ids": "item_ids",
                    "inputList": "item_ids", "itemList": "item_ids", "context": "context",
                    "filter": "filter", "filterArn": "filter", "filter_values": "filter_values",
                    "filterValues": "filter_values", "metadata_columns": "metadata_columns",
                    "metadataColumns": "metadata_columns"}


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

    Attributes
    ----------
    filters : dict
        Filter ARN -> plan (an object with ``evaluate(data, user_id, item_rows, filter_values)``
        returning a keep-mask, or such a callable); ``rank(filter=<arn>)`` looks ARNs up here.
    data : CampaignData
        What filter plans evaluate against.
    """

    def __init__(self, model, name: str = "rankcore", *, region: str = DEFAULT_REGION,
                 account: str = DEFAULT_ACCOUNT, backend: str | None = None):
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"campaign name {name!r} must be 1-63 characters of [a-zA-Z0-9-_] "
                             "starting with a letter or digit")
        self.model = model
        self.name = name
        self.arn = f"arn:aws:personalize:{region}:{account}:campaign/{name}"
        self.region = region
        self.account = account
        self.backend = backend
        self.filters: dict = {}
        self.data = CampaignData(model)
        self._rank_fn = _core_api.rank
        self._rank_batch_fn = _core_api.rank_batch
        self._table = model.item_table
        self._lookup = model.item_index.lookup
        self._user_get = model.user_index.get
        self._users = np.asarray(model.user_embeddings)  # plain ndarray: cheaper row views
        self._cold = np.asarray(model.cold_start)
        self._context = model.context
        self._item_columns = model.item_columns

    def __repr__(self) -> str:
        return f"Campaign(arn={self.arn!r}, model={self.model!r})"

    # ----------------------------------------------------------------- pieces
    def user_vector(self, user_id: str, context: Mapping[str, str] | None = None) -> np.ndarray:
        """float32 (dim,): user (or cold-start) vector plus the context vectors."""
        if type(user_id) is not str and not isinstance(user_id, str):
            raise TypeError(f"user_id must be str, got {type(user_id).__name__}")
        row = self._user_get(user_id)
        u = self._users[row] if row >= 0 else self._cold
        if context:
            if not isinstance(context, Mapping):
                raise InvalidInputException("context must be a mapping of field to value")
            u = u.copy()
            for field, value in context.items():
                table = self._context.get(field)
                if table is None and isinstance(field, str):
                    table = self._context.get(field.upper())
                if table is None:
                    known = ", ".join(self._context) or "none"
                    raise InvalidInputException(
                        f"Unknown context field {field!r} (the model's context fields: {known})")
                if not isinstance(value, str):
                    raise InvalidInputException(f"context value for {field!r} must be a string")
                r = table.index.get(value)
                if r >= 0:
                    u += table.vectors[r]
        return u

    def _metadata_spec(self, metadata_columns) -> list:
        if isinstance(metadata_columns, Mapping):
            names: list = []
            for key, cols in metadata_columns.items():
                if key != "ITEMS":
                    raise InvalidInputException(
                        f"metadataColumns supports only the ITEMS dataset, got {key!r}")
                if isinstance(cols, str):
                    raise InvalidInputException("metadataColumns.ITEMS must be a list of column names")
                names.extend(cols)
        elif isinstance(metadata_columns, str):
            names = [metadata_columns]
        else:
            names = list(metadata_columns)
        spec, missing = [], []
        for name in names:
            col = self._item_columns.get(name.upper()) if isinstance(name, str) else None
            if col is None:
                missing.append(name)
            else:
                spec.append((name, col))
        if missing:
            known = ", ".join(self._item_columns) or "none"
            raise InvalidInputException(f"Invalid metadata column(s) {missing} for dataset ITEMS "
                                        f"(the model's item columns: {known})")
        return spec

    def _resolve_filter(self, filter):
        if isinstance(filter, str):
            plan = self.filters.get(filter)
            if plan is None:
                raise ResourceNotFoundException(f"Resource {filter} does not exist.")
            filter = plan
        evaluate = getattr(filter, "evaluate", None)
        if evaluate is None:
            if not callable(filter):
                raise TypeError("filter must be a filter ARN, an object with .evaluate() or a callable")
            evaluate = filter
        return evaluate

    @staticmethod
    def _dedupe(item_ids: Sequence, rows: np.ndarray) -> tuple:
        """``(positions | None, known rows, unknown ids)`` with duplicates dropped (first kept).

        ``positions`` is None when every input item is known and distinct (rows used as is).
        """
        if _all_known_distinct is not None and _all_known_distinct(rows):
            return None, rows, []  # the common case, checked natively in one pass
        n = rows.shape[0]
        unknown: list = []
        pos = None
        krows = rows
        if n and rows.min() < 0:
            known = rows >= 0
            pos = np.flatnonzero(known)
            krows = rows[pos]
            seen: dict = {}
            for p in np.flatnonzero(~known).tolist():
                s = item_ids[p]
                if not isinstance(s, str):
                    raise TypeError(f"item IDs must be str, got {type(s).__name__} at position {p}")
                seen.setdefault(s, None)
            unknown = list(seen)
        if krows.shape[0] > 1:
            srt = np.sort(krows)
            if (srt[1:] == srt[:-1]).any():
                _, first = np.unique(krows, return_index=True)
                first.sort()
                pos = first if pos is None else pos[first]
                krows = krows[first]
        return pos, krows, unknown

    def _filter(self, filter, user_id, pos, krows, unknown, filter_values) -> tuple:
        """Apply a filter to the known items (and decide the fate of the unknown ones).

        Items the model does not know have no metadata and no interactions (row -1): they match
        no condition, so an INCLUDE filter removes them and an EXCLUDE filter keeps them (still
        last, unscored). The plan is asked once about row -1 on behalf of all of them.
        """
        evaluate = self._resolve_filter(filter)
        rows = np.append(krows, -1) if unknown else krows
        try:
            keep = evaluate(self.data, user_id, rows, filter_values or {})
        except PersonalizeError:
            raise
        except ValueError as e:  # e.g. a missing INCLUDE placeholder value, a malformed value
            raise InvalidInputException(str(e)) from None
        if type(keep) is not np.ndarray or keep.dtype != np.bool_:
            keep = np.asarray(keep, dtype=bool)
        if keep.shape != rows.shape:
            raise ValueError(f"filter returned a mask of shape {keep.shape} for {rows.shape[0]} items")
        if unknown:
            if not keep[-1]:
                unknown = []
            keep = keep[:-1]
        idx = keep.nonzero()[0]  # keep is 1-D: np.flatnonzero's ravel and dispatch cost more than it
        if idx.shape[0] == krows.shape[0]:  # everything kept
            return pos, krows, unknown
        return (idx if pos is None else pos[idx]), krows[idx], unknown

    # ----------------------------------------------------------------- serving
    # ----------------------------------------------------------------- filters and events
    def filter_arn(self, name: str) -> str:
        """ARN of the filter ``name``: ``arn:aws:personalize:<region>:<account>:filter/<name>``."""
        return f"arn:aws:personalize:{self.region}:{self.account}:filter/{name}"

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

        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"filter name {name!r} must be 1-63 characters of [a-zA-Z0-9-_] "
                             "starting with a letter or digit")
        plan = compile_filter(expression)
        plan.validate(self.data)
        arn = self.filter_arn(name)
        filters = dict(self.filters)
        filters[arn] = plan
        self.filters = filters  # one assignment: concurrent readers see the old or the new dict
        return arn

    def delete_filter(self, filter_arn: str) -> None:
        """Remove a filter (``ResourceNotFoundException`` when there is none with that ARN)."""
        if filter_arn not in self.filters:
            raise ResourceNotFoundException(f"Resource {filter_arn} does not exist.")
        filters = dict(self.filters)
        del filters[filter_arn]
        self.filters = filters

    def put_events(self, user_id: str, events: Sequence[Mapping]) -> None:
        """Record interactions (Personalize's PutEvents) so interaction filters see them next call.

        Parameters
        ----------
        user_id : str
        events : list of dict
            Each with ``itemId`` (str), ``eventType`` (str) and ``sentAt`` (epoch seconds as a
            number, or a ``datetime``; naive datetimes are taken as UTC). Items the model does
            not know are recorded but never match a filter (they have no row).

        Thread-safe while other threads rank. The whole list is validated before anything is
        recorded, so a bad event records nothing (``InvalidInputException`` naming it).
        """
        import datetime as _dt

        if not isinstance(user_id, str) or not user_id:
            raise InvalidInputException("userId must be a non-empty string")
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidInputException("events must be a list of event dicts")
        if not 1 <= len(events) <= 10:
            raise InvalidInputException("events must hold 1 to 10 events (PutEvents' limit)")
        item_ids, types, stamps = [], [], []
        for i, ev in enumerate(events):
            if not isinstance(ev, Mapping):
                raise InvalidInputException(f"event {i} must be a dict")
            item, etype, sent = ev.get("itemId"), ev.get("eventType"), ev.get("sentAt")
            if not isinstance(item, str) or not item:
                raise InvalidInputException(f"event {i}: itemId must be a non-empty string")
            if not isinstance(etype, str) or not etype:
                raise InvalidInputException(f"event {i}: eventType must be a non-empty string")
            if isinstance(sent, _dt.datetime):
                if sent.tzinfo is None:
                    sent = sent.replace(tzinfo=_dt.timezone.utc)
                sent = sent.timestamp()
            elif isinstance(sent, bool) or not isinstance(sent, (int, float)) or sent != sent:
                raise InvalidInputException(f"event {i}: sentAt must be epoch seconds or a datetime")
            item_ids.append(item)
            types.append(etype)
            stamps.append(float(sent))
        rows = self._lookup(item_ids)
        self.data.record_interactions(user_id, rows.tolist(), types, stamps)

    def rank(self, user_id: str, item_ids: Sequence[str], *, context: Mapping[str, str] | None = None,
             filter=None, filter_values: Mapping[str, str] | None = None,
             metadata_columns=None) -> RankingResult:
        """Rank ``item_ids`` for ``user_id`` (GetPersonalizedRanking, see the module docstring).

        Parameters
        ----------
        user_id : str
        item_ids : sequence of str
            Any length (the service's 500 limit is the ``Client``'s business).
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
        if not isinstance(item_ids, (list, tuple)):
            item_ids = list(item_ids)
        meta = self._metadata_spec(metadata_columns) if metadata_columns else None
        u = self.user_vector(user_id, context)
        rows = self._lookup(item_ids)
        pos, krows, unknown = self._dedupe(item_ids, rows)
        if filter is not None:
            pos, krows, unknown = self._filter(filter, user_id, pos, krows, unknown, filter_values)
        rid = new_recommendation_id()
        if krows.shape[0] == 0:
            return RankingResult(item_ids, _EMPTY_I64, _EMPTY_F32, _EMPTY_I64, unknown, rid, meta)
        r = self._rank_fn(u, self._table, krows, backend=self.backend)
        positions = r.positions if pos is None else pos[r.positions]
        return RankingResult(item_ids, positions, r.scores, r.items, unknown, rid, meta)

    def rank_batch(self, requests: Iterable) -> list:
        """Serve many requests with one batched kernel call.

        Each request is a tuple ``(user_id, item_ids)`` / ``(user_id, item_ids, context)`` or a
        dict with ``user_id``, ``item_ids`` and optionally ``context``, ``filter``,
        ``filter_values``, ``metadata_columns`` (Personalize's camelCase names ``userId``,
        ``inputList``/``itemList``, ``filterArn``, ... are accepted too). Returns one
        ``RankingResult`` per request, in order; an invalid request raises for the whole batch.
        """
        parsed = [self._parse_request(r) for r in requests]
        if not parsed:
            return []
        lists = [p["item_ids"] for p in parsed]
        flat = list(chain.from_iterable(lists))
        rows_all = self._lookup(flat)
        bounds = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in lists], out=bounds[1:])
        users, cands, prepared = [], [], []
        for i, p in enumerate(parsed):
            meta = self._metadata_spec(p["metadata_columns"]) if p.get("metadata_columns") else None
            u = self.user_vector(p["user_id"], p.get("context"))
            rows = rows_all[bounds[i]:bounds[i + 1]]
            pos, krows, unknown = self._dedupe(p["item_ids"], rows)
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

    def rank_many(self, user_ids: Sequence[str], flat_ids: Sequence[str], bounds: np.ndarray, *,
                   contexts: Sequence | None = None, filter=None,
                   filter_values: Sequence | None = None, threads: int | None = None) -> tuple:
        """Rank many requests at once, with ``rank``'s semantics, returning flat arrays.

        The lean entry point of batch jobs: no ``RankingResult`` objects, no recommendation IDs,
        chunk-wide lookups, user gathers and duplicate detection, one kernel call.

        Parameters
        ----------
        user_ids : sequence of str, one per request
        flat_ids : list of str
            Every request's item IDs, concatenated; request i has ``flat_ids[bounds[i]:bounds[i+1]]``.
        bounds : int64 (n + 1,)
        contexts : sequence of (mapping or None), optional
        filter : filter plan, ARN or callable, optional
            Applied to every request with ``filter_values[i]``.

        Returns
        -------
        ``(order, scores, offsets, unknown, errors)``: request i's scored items are
        ``flat_ids[order[offsets[i]:offsets[i+1]]]`` with ``scores[offsets[i]:offsets[i+1]]``
        (float32, highest first); ``unknown`` maps a request to its unknown IDs (absent: none);
        ``errors`` maps a request that ``rank`` would refuse to its exception (no items then).
        Non-string IDs raise ``TypeError`` for the whole call.
        """
        n_req = len(user_ids)
        bounds = np.asarray(bounds, dtype=np.int64)
        if n_req == 0:
            return _EMPTY_I64, _EMPTY_F32, np.zeros(1, dtype=np.int64), {}, {}
        rows = self._lookup(flat_ids)
        urows = self.model.user_index.lookup(user_ids)
        cold = self._cold
        users = np.empty((n_req, cold.shape[0]), dtype=np.result_type(self._users.dtype, cold.dtype))
        is_known_user = urows >= 0
        if is_known_user.all():
            np.take(self._users, urows, axis=0, out=users)
        else:
            users[:] = cold
            users[is_known_user] = self._users[urows[is_known_user]]
        errors: dict = {}
        if contexts is not None:
            for i, ctx in enumerate(contexts):
                if ctx:
                    try:
                        users[i] = self.user_vector(user_ids[i], ctx)
                    except (ValueError, TypeError, LookupError) as exc:
                        errors[i] = exc
        lens = np.diff(bounds)
        line_of = np.repeat(np.arange(n_req, dtype=np.int64), lens)
        known = rows >= 0
        all_known = bool(known.all()) if rows.shape[0] else True
        keep = known if not all_known else None  # None: every position kept so far
        unknown: dict = {}
        if not all_known:
            for p, i in zip(np.flatnonzero(~known).tolist(), line_of[~known].tolist()):
                s = flat_ids[p]
                if not isinstance(s, str):
                    raise TypeError(f"item IDs must be str, got {type(s).__name__} at position {p}")
                unknown.setdefault(i, {}).setdefault(s, None)
            unknown = {i: list(d) for i, d in unknown.items()}
        # duplicates: (request, row) pairs that occur twice; only their requests are re-examined
        kidx = None if all_known else np.flatnonzero(known)
        kr = rows if kidx is None else rows[kidx]
        if kr.shape[0] > 1:
            n_items = max(int(self._table.n_items), 1)
            keys = (line_of if kidx is None else line_of[kidx]) * n_items + kr
            keys.sort()
            dup = keys[1:] == keys[:-1]
            if dup.any():
                if keep is None:
                    keep = np.ones(rows.shape[0], dtype=bool)
                for i in np.unique(keys[1:][dup] // n_items).tolist():
                    a, b = int(bounds[i]), int(bounds[i + 1])
                    kp = np.flatnonzero(keep[a:b])
                    _, first = np.unique(rows[a:b][kp], return_index=True)
                    seg = np.zeros(b - a, dtype=bool)
                    seg[kp[first]] = True
                    keep[a:b] = seg
        if filter is not None:
            cand_parts = []
            for i in range(n_req):
                if i in errors:
                    continue
                a, b = int(bounds[i]), int(bounds[i + 1])
                pos = np.flatnonzero(keep[a:b]) if keep is not None else np.arange(b - a, dtype=np.int64)
                unk = unknown.get(i, [])
                try:
                    pos, _, unk = self._filter(filter, user_ids[i], pos, rows[a:b][pos], unk,
                                               filter_values[i] if filter_values is not None else None)
                except (ValueError, TypeError, LookupError) as exc:
                    errors[i] = exc
                    continue
                if unk:
                    unknown[i] = unk
                else:
                    unknown.pop(i, None)
                cand_parts.append(pos + a)
            cpos = np.concatenate(cand_parts) if cand_parts else _EMPTY_I64
            for i in errors:
                unknown.pop(i, None)
        else:
            if errors:
                if keep is None:
                    keep = np.ones(rows.shape[0], dtype=bool)
                for i in errors:
                    keep[bounds[i]:bounds[i + 1]] = False
                    unknown.pop(i, None)
            cpos = np.flatnonzero(keep) if keep is not None else None
        if cpos is None:  # every item known, distinct and kept
            cands, offsets, cline = rows, bounds, line_of
        else:
            cands = rows[cpos]
            cline = line_of[cpos]
            offsets = np.zeros(n_req + 1, dtype=np.int64)
            np.cumsum(np.bincount(cline, minlength=n_req), out=offsets[1:])
        res = self._rank_batch_fn(users, self._table, cands, offsets, backend=self.backend,
                                  threads=threads)
        ro = np.asarray(res.offsets)
        local = np.asarray(res.positions)
        # request-local candidate positions -> indices into flat_ids
        seg = np.repeat(np.arange(n_req, dtype=np.int64), np.diff(ro))
        order = offsets[seg] + local
        if cpos is not None:
            order = cpos[order]
        return order, np.asarray(res.scores), ro, unknown, errors

    @staticmethod
    def _parse_request(req) -> dict:
        if isinstance(req, Mapping):
            p = {}
            for k, v in req.items():
                name = _REQUEST_ALIASES.get(k)
                if name is None:
                    raise InvalidInputException(f"Unknown request member {k!r}")
                p[name] = v
        elif isinstance(req, (tuple, list)) and len(req) in (2, 3):
            p = {"user_id": req[0], "item_ids": req[1]}
            if len(req) == 3:
                p["context"] = req[2]
        else:
            raise TypeError("a request is a (user_id, item_ids[, context]) tuple or a dict")
        if "user_id" not in p or "item_ids" not in p:
            raise InvalidInputException("a request needs a user ID and a list of item IDs")
        if not isinstance(p["item_ids"], (list, tuple)):
            p["item_ids"] = list(p["item_ids"])
        return p


# --------------------------------------------------------------------------- client
class Client:
    """In-process stand-in for ``boto3.client("personalize-runtime")`` (GetPersonalizedRanking).

    Parameters
    ----------
    campaigns : list of Campaign, or mapping of campaign ARN -> Campaign
    max_input_items : int or None
        The ``inputList`` limit (the service's 500 by default; ``None`` lifts it).

    ``get_personalized_ranking`` takes boto3's keyword arguments and returns the dict boto3 returns
    (including ``ResponseMetadata``); errors are ``client.exceptions.InvalidInputException`` and
    ``client.exceptions.ResourceNotFoundException``.
    """

    def __init__(self, campaigns, *, max_input_items: int | None = 500):
        if isinstance(campaigns, Campaign):
            campaigns = [campaigns]
        if isinstance(campaigns, Mapping):
            self._campaigns = dict(campaigns)
        else:
            self._campaigns = {c.arn: c for c in campaigns}
        self.max_input_items = max_input_items
        self.exceptions = _CLIENT_EXCEPTIONS

    @property
    def campaigns(self) -> dict:
        return dict(self._campaigns)

    def _rank_request(self, params: Mapping) -> RankingResult:
        """Validate a request body, find its campaign and rank; client-flavoured exceptions."""
        exc = self.exceptions
        try:
            validate_request(params, max_input_items=self.max_input_items)
            arn = params["campaignArn"]
            campaign = self._campaigns.get(arn)
            if campaign is None:
                raise ResourceNotFoundException(f"Resource {arn} does not exist.")
            get = params.get
            return campaign.rank(params["userId"], params["inputList"],
                                 context=get("context"), filter=get("filterArn"),
                                 filter_values=get("filterValues"),
                                 metadata_columns=get("metadataColumns"))
        except InvalidInputException as e:
            raise exc.InvalidInputException(e.message) from None
        except ResourceNotFoundException as e:
            raise exc.ResourceNotFoundException(e.message) from None

    def get_personalized_ranking(self, **params) -> dict:
        """GetPersonalizedRanking with boto3's keyword arguments; returns boto3's response dict."""
        response = self._rank_request(params).to_response()
        request_id = new_uuid()
        response["ResponseMetadata"] = {
            "RequestId": request_id, "HTTPStatusCode": 200,
            "HTTPHeaders": {"content-type": "application/json", "x-amzn-requestid": request_id},
            "RetryAttempts": 0}
        return response

    def get_personalized_ranking_json(self, params: Mapping) -> tuple:
        """GetPersonalizedRanking straight to the wire: ``(body, request_id)``.

        ``params`` is the request body as a mapping (wire names, as ``get_personalized_ranking``
        takes them as keywords); ``body`` is the JSON response body as ``bytes`` (no
        ``ResponseMetadata``) and ``request_id`` a new UUID. Validation, ranking and errors are
        those of ``get_personalized_ranking``; only the boto3-style response dict is skipped,
        for servers that send the body as it is. Needs orjson (the ``server`` extra).
        """
        from orjson import dumps

        return dumps(self._rank_request(params).to_response()), new_uuid()

    def can_paginate(self, operation_name: str) -> bool:
        return False


_CLIENT_EXCEPTIONS = _client_exception_classes()

