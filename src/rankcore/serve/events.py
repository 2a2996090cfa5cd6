"""The personalize-events operations of ``rankcore serve``: PutEvents, PutItems, PutUsers.

``event_operations(feed)`` gives ``(path, operation name, handler)`` for ``POST /events``,
``POST /items`` and ``POST /users``; ``create_app`` serves them as it serves the runtime's
operations (same error shapes, SigV4 with signing name ``personalize``). A handler checks the
request on the event loop, writes it from a worker thread (the store's commit waits for the
disk) and answers 200 with an empty body once the store holds it; the feed's background thread
applies it (with the other workers' writes) within its poll interval. ``open_feed`` builds the process's ``EventFeed`` from the
settings. The contract is in docs/personalize.md.
"""
from __future__ import annotations

import asyncio
import uuid

from ..errors import InvalidInputException
from ..personalize.event_store import EventStore
from ..personalize.events import EventFeed

__all__ = ["event_operations", "open_feed", "parse_tracking_id"]


def parse_tracking_id(text: str) -> tuple:
    """``CAMPAIGN=ID`` -> ``(campaign, id)``."""
    name, sep, tid = text.partition("=")
    if not sep or not name or not tid:
        raise ValueError(f"--tracking-id must look like CAMPAIGN=ID, got {text!r}")
    return name, tid


def open_feed(settings: dict) -> EventFeed:
    """The process's feed: the ``event_store`` file of the settings, or memory without one.

    With a store, its retention (``event_retention_days``/``_rows``) is applied by a compaction
    every ``event_compact_interval`` seconds, the first one at start-up.
    """
    path = settings.get("event_store")
    if not path:
        return EventFeed(None)
    store = EventStore(path, retention_days=settings.get("event_retention_days"),
                       retention_rows=settings.get("event_retention_rows"))
    return EventFeed(store, compact_interval=settings.get("event_compact_interval"))


def _request(params, *keys) -> list:
    if not isinstance(params, dict):
        raise InvalidInputException("Request body must be a JSON object")
    return [params.get(k) for k in keys]


def event_operations(feed: EventFeed) -> list:
    """``[(path, operation name, async handler)]`` of the three puts."""

    def operation(kind: str, check, *keys):
        async def handler(params):
            checked = check(*_request(params, *keys))  # on the event loop: cheap, no thread hop
            await asyncio.get_running_loop().run_in_executor(None, feed.write, kind, checked, False)
            return b"", str(uuid.uuid4())
        return handler

    return [("/events", "PutEvents", operation("events", feed.check_events, "trackingId", "userId",
                                               "sessionId", "eventList")),
            ("/items", "PutItems", operation("items", feed.check_items, "datasetArn", "items")),
            ("/users", "PutUsers", operation("users", feed.check_users, "datasetArn", "users"))]
