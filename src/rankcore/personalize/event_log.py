"""``MemoryEventLog``: the event store of a campaign or server without one on disk.

It has ``EventStore``'s writing and reading interface (``put_events``, ``put_items``,
``put_users``, ``tail``, ``replay``, ``last_sequence``, ``close``) over a list in memory, so the
events machinery works the same with or without a file; nothing survives the process, and two
processes do not share it. Bounded: the newest ``max_records`` records are kept (older ones are
dropped, as ``compact()`` would drop them from a store).
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from typing import Iterator, Mapping, Optional, Sequence

from .event_records import EventRecord, ItemRecord, UserRecord, entity_rows, event_rows

__all__ = ["MemoryEventLog"]


class MemoryEventLog:
    """An in-memory, bounded stand-in for ``EventStore`` (thread-safe)."""

    path = None

    def __init__(self, max_records: int = 200_000):
        self.max_records = max_records
        self._lock = threading.Lock()
        self._records: deque = deque(maxlen=max_records)
        self._last = 0
        self.closed = False

    def _append(self, make, rows) -> None:
        with self._lock:
            for row in rows:
                self._last += 1
                self._records.append(make(self._last, *row))

    def put_events(self, tracking_id: str, user_id: Optional[str], session_id: str,
                   events: Sequence[Mapping]) -> None:
        rows = event_rows(tracking_id, user_id, session_id, events, time.time())

        def make(seq, *row):
            impression = row[10]
            return EventRecord(seq, *row[:10], None if impression is None else tuple(json.loads(impression)),
                               row[11])
        self._append(make, rows)

    def put_items(self, dataset_arn: str, items: Sequence[Mapping]) -> None:
        self._append(ItemRecord, entity_rows(dataset_arn, items, "items", "itemId", time.time()))

    def put_users(self, dataset_arn: str, users: Sequence[Mapping]) -> None:
        self._append(UserRecord, entity_rows(dataset_arn, users, "users", "userId", time.time()))

    def tail(self, after: int = 0, limit: Optional[int] = 1000) -> list:
        with self._lock:  # sequences are contiguous: the position of ``after + 1`` is known
            if not self._records:
                return []
            start = max(0, after - self._records[0].sequence + 1)
            stop = None if limit is None else start + limit
            return list(itertools.islice(self._records, start, stop))

    def replay(self, after: int = 0, limit: Optional[int] = None) -> Iterator:
        yield from self.tail(after, limit)

    def last_sequence(self) -> int:
        return self._last

    def close(self) -> None:
        self.closed = True

