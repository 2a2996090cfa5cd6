"""What filters see of a campaign (``CampaignData``) and the PutEvents overlay on the model's history.

``CampaignData`` gives filter plans the item/user metadata columns, user rows and each user's
recent interactions: the model's stored history merged by time with the interactions recorded
since (``record_interactions``, thread-safe). ``parse_events`` checks a PutEvents event list
(see docs/personalize.md) before ``Campaign.put_events`` records it.
"""
from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import threading
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputException
from ..filters import InteractionHistory
from ..model.model import RECENT_INTERACTIONS_PER_TYPE

__all__ = ["CampaignData", "parse_events", "MAX_EVENTS"]

#: PutEvents' limit on the events of one call.
MAX_EVENTS = 10


def parse_events(user_id, events) -> tuple:
    """``(item_ids, event_types, timestamps)`` of a PutEvents call, or ``InvalidInputException``.

    ``events`` is a list of 1 to ``MAX_EVENTS`` dicts with ``itemId`` (str), ``eventType`` (str)
    and ``sentAt`` (epoch seconds, or a ``datetime``; naive datetimes are taken as UTC). The whole
    list is checked before anything is returned; the exception names the first bad event.
    """
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInputException("userId must be a non-empty string")
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
        raise InvalidInputException("events must be a list of event dicts")
    if not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInputException(f"events must hold 1 to {MAX_EVENTS} events (PutEvents' limit)")
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
    return item_ids, types, stamps


class CampaignData:
    """What filter plans see: metadata columns, user rows and recent interactions.

    ``recent_interactions`` merges the model's stored history with interactions recorded since
    (``record_interactions``, thread-safe; the hook for PutEvents). Of the recorded ones only what
    filters can see is held: per user, the ``RECENT_INTERACTIONS_PER_TYPE`` most recent per event
    type, for the ``MAX_EVENT_TYPES_PER_USER`` event types seen most recently; so memory and the
    cost of a call do not grow with the number of events recorded.
    """

    #: Event types whose recorded interactions are held per user (the type whose newest event is
    #: oldest is dropped first).
    MAX_EVENT_TYPES_PER_USER = 100

    def __init__(self, model):
        self.model = model
        self.item_columns = model.item_columns
        self.user_columns = model.user_columns
        #: Rows past the model's of users known only from PutUsers (their ``user_columns`` rows).
        self.extra_user_rows: dict = {}
        self._lock = threading.Lock()
        # user_id -> {event_type: [newest entry, min-heap of entries]}, an entry being
        # (timestamp, sequence, item_row); at most RECENT_INTERACTIONS_PER_TYPE entries a heap,
        # whose root is the first to go
        self._events: dict = {}
        self._sequence = itertools.count()  # recording order, for ties of timestamps
        self._version: dict = {}  # user_id -> number of record_interactions calls
        self._merged: dict = {}  # user_id -> (version, recent interactions at the default limit)
        self._histories: dict = {}  # user_id -> (model, version, filters.InteractionHistory)

    def user_row(self, user_id: str) -> int:
        row = self.model.user_row(user_id)
        if row < 0 and self.extra_user_rows:
            return self.extra_user_rows.get(user_id, -1)
        return row

    def item_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.model.item_rows(item_ids)

    def record_interactions(self, user_id: str, item_rows: Iterable[int],
                            event_types: Iterable[str], timestamps: Iterable[float]) -> None:
        """Add interactions for ``user_id`` (item rows, event types, epoch seconds).

        An interaction older than the ``RECENT_INTERACTIONS_PER_TYPE`` held for its event type
        is not kept (no filter could see it); each one costs O(log RECENT_INTERACTIONS_PER_TYPE).
        """
        new = [(float(t), int(r), str(e).lower())
               for r, e, t in zip(item_rows, event_types, timestamps)]
        bound = RECENT_INTERACTIONS_PER_TYPE
        with self._lock:
            per_type = self._events.setdefault(user_id, {})
            for ts, row, etype in new:
                entry = (ts, next(self._sequence), row)
                held = per_type.get(etype)
                if held is None:
                    if len(per_type) >= self.MAX_EVENT_TYPES_PER_USER:
                        stalest = min(per_type, key=lambda e: per_type[e][0])
                        if per_type[stalest][0] > entry:
                            continue  # older than every held type's newest interaction
                        del per_type[stalest]
                    per_type[etype] = [entry, [entry]]
                    continue
                if held[0] < entry:
                    held[0] = entry
                heap = held[1]
                if len(heap) < bound:
                    heapq.heappush(heap, entry)
                elif heap[0] < entry:
                    heapq.heapreplace(heap, entry)
            self._version[user_id] = self._version.get(user_id, 0) + 1
            self._merged.pop(user_id, None)
            self._histories.pop(user_id, None)

    def recent_interactions(self, user_id: str, limit: int | None = None) -> tuple:
        """``(item_rows int64 (m,), event_types list[str])``, at most ``limit`` (default 100)
        most recent per event type, oldest first.

        Of the recorded interactions at most ``RECENT_INTERACTIONS_PER_TYPE`` per event type are
        held, so a larger ``limit`` sees no more of them than that.
        """
        default = limit is None or limit == RECENT_INTERACTIONS_PER_TYPE
        if default:
            cached = self._merged.get(user_id)
            if cached is not None:
                return cached[1]
        limit = RECENT_INTERACTIONS_PER_TYPE if limit is None else limit
        with self._lock:
            extra = [(ts, seq, row, etype)
                     for etype, (_, heap) in self._events.get(user_id, {}).items()
                     for ts, seq, row in heap]
            version = self._version.get(user_id, 0)
        if not extra:
            return self.model.recent_interactions(user_id, limit)
        extra.sort()  # by time, then recording order
        result = self._merge(user_id, [(ts, row, etype) for ts, _, row, etype in extra], limit)
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

