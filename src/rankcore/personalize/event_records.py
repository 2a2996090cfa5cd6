"""What an event store holds: its record types, and the checks that turn wire dicts into rows.

``EventRecord``, ``ItemRecord`` and ``UserRecord`` are what ``EventStore.tail`` and ``replay``
return, each with the ``sequence`` the store gave it and a ``kind`` ("event", "item", "user").
``event_rows`` and ``entity_rows`` convert PutEvents' ``eventList`` and PutItems'/PutUsers'
entries (the wire's camelCase keys) into table rows, raising ``TypeError``/``ValueError`` for
obviously wrong input; the service's own limits are checked by the caller (see
docs/personalize.md).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import uuid
from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional, Sequence, Union

__all__ = ["EventRecord", "ItemRecord", "UserRecord", "Record", "EVENT_COLUMNS", "event_record",
           "event_rows", "entity_rows", "check_number", "check_text"]

#: The events table's columns, in ``EventRecord`` order (``impression`` stored as JSON text).
EVENT_COLUMNS = ("seq, tracking_id, user_id, session_id, event_id, event_type, event_value, item_id,"
                 " properties, sent_at, recommendation_id, impression, received_at")

_EVENT_KEYS = frozenset({"eventId", "eventType", "eventValue", "itemId", "properties", "sentAt",
                         "recommendationId", "impression"})


@dataclass(frozen=True)
class EventRecord:
    """One stored event (PutEvents). ``properties`` is JSON text; ``impression`` a tuple of item IDs."""

    kind: ClassVar[str] = "event"
    sequence: int
    tracking_id: str
    user_id: Optional[str]
    session_id: str
    event_id: str
    event_type: str
    event_value: Optional[float]
    item_id: Optional[str]
    properties: Optional[str]
    sent_at: float
    recommendation_id: Optional[str]
    impression: Optional[tuple]
    received_at: float


@dataclass(frozen=True)
class ItemRecord:
    """One stored PutItems item; ``properties`` is the JSON text as received (None when absent)."""

    kind: ClassVar[str] = "item"
    sequence: int
    dataset_arn: str
    item_id: str
    properties: Optional[str]
    received_at: float


@dataclass(frozen=True)
class UserRecord:
    """One stored PutUsers user; ``properties`` is the JSON text as received (None when absent)."""

    kind: ClassVar[str] = "user"
    sequence: int
    dataset_arn: str
    user_id: str
    properties: Optional[str]
    received_at: float


Record = Union[EventRecord, ItemRecord, UserRecord]


# --------------------------------------------------------------------------- input conversion
def check_text(value, what: str, required: bool = True) -> Optional[str]:
    if value is None:
        if required:
            raise ValueError(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    return value


def check_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, not {value}")
    return value


def _epoch(value, what: str) -> float:
    """Epoch seconds from a number or a datetime (a naive datetime is taken as UTC)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if value is None:
        raise ValueError(f"{what} is required")
    return check_number(value, what)


def _properties(value, what: str) -> Optional[str]:
    """JSON object text from a JSON string or a mapping (None stays None)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"), allow_nan=False)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a JSON string or a dict, not {type(value).__name__}")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{what} must be a JSON object, not {type(parsed).__name__}")
    return value


def _list_of(values, what: str) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise TypeError(f"{what} must be a list, not {type(values).__name__}")
    if not values:
        raise ValueError(f"{what} must not be empty")
    for i, value in enumerate(values):
        if not isinstance(value, Mapping):
            raise TypeError(f"{what}[{i}] must be a dict, not {type(value).__name__}")
    return list(values)


def _event_row(tracking_id, user_id, session_id, ev: Mapping, i: int, now: float) -> tuple:
    unknown = set(ev) - _EVENT_KEYS
    if unknown:
        raise ValueError(f"event {i}: unknown field(s) {sorted(map(str, unknown))}")
    impression = ev.get("impression")
    if impression is not None:
        if isinstance(impression, (str, bytes)) or not isinstance(impression, Sequence):
            raise TypeError(f"event {i}: impression must be a list of item IDs")
        impression = json.dumps([check_text(x, f"event {i}: impression item") for x in impression])
    value = ev.get("eventValue")
    return (tracking_id, user_id, session_id,
            check_text(ev.get("eventId"), f"event {i}: eventId", False) or uuid.uuid4().hex,
            check_text(ev.get("eventType"), f"event {i}: eventType"),
            None if value is None else check_number(value, f"event {i}: eventValue"),
            check_text(ev.get("itemId"), f"event {i}: itemId", False),
            _properties(ev.get("properties"), f"event {i}: properties"),
            _epoch(ev.get("sentAt"), f"event {i}: sentAt"),
            check_text(ev.get("recommendationId"), f"event {i}: recommendationId", False),
            impression, now)


def event_record(row: tuple) -> EventRecord:
    """An ``EventRecord`` from a row of ``SELECT {EVENT_COLUMNS} FROM events``."""
    return EventRecord(*row[:11], None if row[11] is None else tuple(json.loads(row[11])), row[12])


def event_rows(tracking_id, user_id, session_id, events, now: float) -> list:
    """Rows (without sequence) for PutEvents' ``eventList``; ``now`` is the time received."""
    tracking_id = check_text(tracking_id, "tracking_id")
    user_id = check_text(user_id, "user_id", required=False)
    session_id = check_text(session_id, "session_id")
    return [_event_row(tracking_id, user_id, session_id, ev, i, now)
            for i, ev in enumerate(_list_of(events, "events"))]


def entity_rows(dataset_arn, entries, what: str, key: str, now: float) -> list:
    """Rows (without sequence) for PutItems' ``items`` or PutUsers' ``users`` (``key`` is the ID key)."""
    dataset_arn = check_text(dataset_arn, "dataset_arn")
    rows = []
    for i, entry in enumerate(_list_of(entries, what)):
        unknown = set(entry) - {key, "properties"}
        if unknown:
            raise ValueError(f"{what}[{i}]: unknown field(s) {sorted(map(str, unknown))}")
        rows.append((dataset_arn, check_text(entry.get(key), f"{what}[{i}]: {key}"),
                     _properties(entry.get("properties"), f"{what}[{i}]: properties"), now))
    return rows
