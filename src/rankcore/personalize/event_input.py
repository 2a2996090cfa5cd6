"""The service's checks on PutEvents, PutItems and PutUsers requests (see docs/personalize.md).

``check_put_events``, ``check_put_items`` and ``check_put_users`` take a request's fields as the
wire (or the Python API) gives them and raise ``InvalidInputException`` naming the first problem:
a missing required field, a list outside 1-10 entries, a string outside its length limits, a
``properties`` that is not a JSON object, an event over 10 KB. They run before anything is
stored, so a bad request stores nothing.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Mapping, Sequence

from ..errors import InvalidInputException

__all__ = ["check_put_events", "check_put_items", "check_put_users", "MAX_ENTRIES", "MAX_EVENT_BYTES"]

#: Entries of one PutEvents, PutItems or PutUsers call.
MAX_ENTRIES = 10
#: Largest event (its JSON), as the service's event size limit.
MAX_EVENT_BYTES = 10 * 1024
_EVENT_FIELDS = {"eventId": 256, "eventType": 256, "itemId": 256, "recommendationId": 40}
_PROPERTIES_MAX = {"event": 1024, "items": 32000, "users": 24000}


def _text(value, what: str, required: bool = True, longest: int = 256):
    if value is None:
        if required:
            raise InvalidInputException(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInputException(f"{what} must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= longest:
        raise InvalidInputException(f"{what} must be 1 to {longest} characters long, got {len(value)}")
    return value


def _entries(values, what: str) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise InvalidInputException(f"{what} must be a list")
    if not 1 <= len(values) <= MAX_ENTRIES:
        raise InvalidInputException(f"{what} must hold 1 to {MAX_ENTRIES} entries, got {len(values)}")
    for i, value in enumerate(values):
        if not isinstance(value, Mapping):
            raise InvalidInputException(f"{what}[{i}] must be an object")
    return list(values)


def _properties(value, what: str, longest: int):
    if value is None:
        return
    if isinstance(value, Mapping):
        value = json.dumps(dict(value))
    if not isinstance(value, str):
        raise InvalidInputException(f"{what} must be a JSON string, not {type(value).__name__}")
    if not 1 <= len(value) <= longest:
        raise InvalidInputException(f"{what} must be 1 to {longest} characters long, got {len(value)}")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise InvalidInputException(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidInputException(f"{what} must be a JSON object, not {type(parsed).__name__}")


def _sent_at(value, what: str) -> None:
    if value is None:
        raise InvalidInputException(f"{what} is required")
    if isinstance(value, _dt.datetime):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputException(f"{what} must be a timestamp (epoch seconds or a datetime)")


def _event(ev: Mapping, i: int) -> None:
    what = f"event {i}"
    for field, longest in _EVENT_FIELDS.items():
        _text(ev.get(field), f"{what}: {field}", field == "eventType", longest)
    _sent_at(ev.get("sentAt"), f"{what}: sentAt")
    value = ev.get("eventValue")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise InvalidInputException(f"{what}: eventValue must be a finite number")
    _properties(ev.get("properties"), f"{what}: properties", _PROPERTIES_MAX["event"])
    impression = ev.get("impression")
    if impression is not None:
        if isinstance(impression, (str, bytes)) or not isinstance(impression, Sequence) \
                or not 1 <= len(impression) <= 25:
            raise InvalidInputException(f"{what}: impression must be a list of 1 to 25 item IDs")
        for item in impression:
            _text(item, f"{what}: impression item")
    size = len(json.dumps({k: v for k, v in ev.items() if k != "sentAt"}, default=str).encode())
    if size > MAX_EVENT_BYTES:
        raise InvalidInputException(f"{what} is {size} bytes; an event is at most {MAX_EVENT_BYTES} bytes")


def check_put_events(tracking_id, user_id, session_id, events) -> list:
    """Check a PutEvents request; return its event list."""
    _text(tracking_id, "trackingId")
    _text(user_id, "userId", required=False)
    _text(session_id, "sessionId")
    events = _entries(events, "eventList")
    for i, ev in enumerate(events):
        _event(ev, i)
    return events


def _check_entities(dataset_arn, entries, what: str, key: str) -> list:
    _text(dataset_arn, "datasetArn")
    entries = _entries(entries, what)
    for i, entry in enumerate(entries):
        _text(entry.get(key), f"{what}[{i}]: {key}")
        _properties(entry.get("properties"), f"{what}[{i}]: properties", _PROPERTIES_MAX[what])
    return entries


def check_put_items(dataset_arn, items) -> list:
    """Check a PutItems request; return its items."""
    return _check_entities(dataset_arn, items, "items", "itemId")


def check_put_users(dataset_arn, users) -> list:
    """Check a PutUsers request; return its users."""
    return _check_entities(dataset_arn, users, "users", "userId")
