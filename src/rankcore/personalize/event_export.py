"""Stored events as a Personalize Interactions CSV, the dataset ``rankcore train`` reads.

``write_interactions_csv(conn, path_or_file)`` reads an event store's ``events`` table through a
SQLite connection (one read snapshot) and writes ``USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE`` and
``EVENT_VALUE`` when any event has a value. ``EventStore.export_interactions_csv`` is the public
entry point; the CSV format is Personalize's (see docs/personalize.md).
"""
from __future__ import annotations

import csv
import io
import math
import os
import sqlite3
import tempfile
from typing import Optional

from .event_records import check_text

__all__ = ["write_interactions_csv"]


def write_interactions_csv(conn: sqlite3.Connection, path_or_file, tracking_id: Optional[str] = None) -> int:
    """Write the events in ``conn``'s store as an Interactions CSV; return the rows written.

    Columns ``USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE``, and ``EVENT_VALUE`` when any exported
    event has a value (empty where one has none); a header row, UTF-8, rows in sequence order.
    ``TIMESTAMP`` is ``sentAt`` floored to whole epoch seconds. Events without an ``itemId`` are
    skipped. An anonymous event (no ``userId``) counts for the user of the newest event that
    carried both its ``sessionId`` and a ``userId`` (the session later signed in), else for the
    session ID itself, as Personalize keys anonymous users by session. ``tracking_id`` limits the
    export to one tracker. A path is written through a temporary file in the same directory,
    synced and renamed into place, so a failed export leaves any earlier file whole; a text file
    object is written directly.
    """
    tracking_id = check_text(tracking_id, "tracking_id", required=False)
    if isinstance(path_or_file, (str, os.PathLike)):
        target = os.fspath(path_or_file)
        fd, tmp = tempfile.mkstemp(prefix=".interactions-", suffix=".csv.tmp",
                                   dir=os.path.dirname(os.path.abspath(target)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                n = _write(conn, out, tracking_id)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return n
    if not hasattr(path_or_file, "write") or isinstance(path_or_file, (io.RawIOBase, io.BufferedIOBase)):
        raise TypeError(f"path_or_file must be a path or a text file object, not {type(path_or_file).__name__}")
    return _write(conn, path_or_file, tracking_id)


def _write(conn: sqlite3.Connection, out, tracking_id: Optional[str]) -> int:
    where = "item_id IS NOT NULL" + ("" if tracking_id is None else " AND tracking_id = ?")
    args = () if tracking_id is None else (tracking_id,)
    conn.execute("BEGIN")  # one snapshot for the three queries
    try:
        owners = dict(conn.execute(
            "SELECT session_id, user_id FROM events WHERE user_id IS NOT NULL ORDER BY seq"))
        with_value = conn.execute(
            f"SELECT 1 FROM events WHERE {where} AND event_value IS NOT NULL LIMIT 1", args).fetchone()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"] + (["EVENT_VALUE"] if with_value else []))
        n = 0
        for user, session, item, sent, etype, value in conn.execute(
                f"SELECT user_id, session_id, item_id, sent_at, event_type, event_value FROM events"
                f" WHERE {where} ORDER BY seq", args):
            row = [user or owners.get(session, session), item, math.floor(sent), etype]
            if with_value:
                row.append("" if value is None else repr(value))
            writer.writerow(row)
            n += 1
        return n
    finally:
        conn.execute("COMMIT")
