"""A durable, append-only store of PutEvents, PutItems and PutUsers records in one SQLite file.

``EventStore`` writes through a single writer thread that groups concurrent requests into one
transaction (group commit), so ``put_*`` returns only once its rows are committed and synced,
without one fsync per request. Every row gets a sequence number from one counter shared by the
three tables; readers in any process poll ``tail(after)`` and apply what is new, in order.
``compact()`` applies retention and keeps only the newest row per item and user;
``export_interactions_csv`` writes a Personalize Interactions CSV for training. The records are
``EventRecord``, ``ItemRecord`` and ``UserRecord``. The wire contract of the three calls is in
docs/personalize.md.
"""
from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from typing import Iterator, Mapping, Optional, Sequence

from ..errors import EventStoreError
from .event_export import write_interactions_csv
from .event_records import (EVENT_COLUMNS, EventRecord, ItemRecord, Record, UserRecord, check_number,
                            entity_rows, event_record, event_rows)

__all__ = ["EventStore", "EventRecord", "ItemRecord", "UserRecord", "Record"]

_APPLICATION_ID = 0x524B4553  # "RKES" in the SQLite header marks a rankcore event store
_FORMAT_VERSION = 1
_PAGE = 1000  # rows per read query while replaying

_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, tracking_id TEXT NOT NULL, user_id TEXT,
    session_id TEXT NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL, event_value REAL,
    item_id TEXT, properties TEXT, sent_at REAL NOT NULL, recommendation_id TEXT, impression TEXT,
    received_at REAL NOT NULL);
CREATE TABLE items (seq INTEGER PRIMARY KEY, dataset_arn TEXT NOT NULL, item_id TEXT NOT NULL,
    properties TEXT, received_at REAL NOT NULL);
CREATE INDEX items_key ON items (dataset_arn, item_id);
CREATE TABLE users (seq INTEGER PRIMARY KEY, dataset_arn TEXT NOT NULL, user_id TEXT NOT NULL,
    properties TEXT, received_at REAL NOT NULL);
CREATE INDEX users_key ON users (dataset_arn, user_id);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('last_sequence', 0);
"""
_INSERT = {
    "events": f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 13)})",
    "items": "INSERT INTO items (seq, dataset_arn, item_id, properties, received_at) VALUES (?, ?, ?, ?, ?)",
    "users": "INSERT INTO users (seq, dataset_arn, user_id, properties, received_at) VALUES (?, ?, ?, ?, ?)",
}


class _Job:
    """One request for the writer thread: rows for one table, or a function of the connection."""

    __slots__ = ("table", "rows", "call", "transaction", "done", "error", "result")

    def __init__(self, table=None, rows=(), call=None, transaction=True):
        self.table, self.rows, self.call, self.transaction = table, rows, call, transaction
        self.done = threading.Event()
        self.error: Optional[BaseException] = None
        self.result = None


_STOP = object()


class EventStore:
    """A durable event store in one SQLite database (WAL mode) shared by a server's processes.

    Parameters
    ----------
    path : str or os.PathLike
        The database file; created when missing (its directory must exist). Several processes
        (the workers of one server) may open the same file: writes serialise on SQLite's lock and
        every process sees every committed row.
    retention_days, retention_rows : float, int or None
        What ``compact()`` keeps of the events: those received within the last ``retention_days``
        and at most the newest ``retention_rows``. None keeps everything.
    commit_interval : float
        Seconds the writer waits after the first queued request for more to join its transaction.
        0 commits whatever is queued at once (requests queued during a commit still share the
        next one).
    max_batch : int
        Most requests in one transaction; 1 gives one commit per request.
    busy_timeout : float
        Seconds to wait for another process's write lock before failing with ``EventStoreError``.
    check : bool
        Run ``PRAGMA quick_check`` at open (it reads the whole file).

    Durability: ``synchronous=FULL`` in WAL mode, so each commit writes and fsyncs the WAL before
    ``put_*`` returns (one fsync per group of requests), and the directory is synced once at
    open so a new file's name is durable too. Surviving a killed process (SIGKILL, OOM) needs
    only the write to the OS, which ``NORMAL`` would give as well; ``FULL`` is for power loss and
    kernel crashes, and holds when the disk honours fsync: a disk or virtual machine that
    acknowledges flushes from a volatile cache can lose the last acknowledged transactions on
    power loss, which no software setting fixes. A corrupt, foreign or locked file raises ``EventStoreError`` at open;
    the store never starts empty over an existing file it cannot read.

    Thread-safe. ``put_*`` check types and raise ``TypeError``/``ValueError`` before anything is
    written; the Personalize limits (1-10 per call, sizes) are the caller's to enforce. Use as a
    context manager or call ``close()``.
    """

    def __init__(self, path, *, retention_days: Optional[float] = None,
                 retention_rows: Optional[int] = None, commit_interval: float = 0.002,
                 max_batch: int = 256, busy_timeout: float = 5.0, check: bool = True):
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
        self.path = os.fspath(path)
        if not self.path or self.path == ":memory:":
            raise ValueError(f"path must name a database file, got {self.path!r}")
        if retention_days is not None and not check_number(retention_days, "retention_days") > 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        if retention_rows is not None and (isinstance(retention_rows, bool)
                                           or not isinstance(retention_rows, int) or retention_rows < 0):
            raise ValueError(f"retention_rows must be an int >= 0, got {retention_rows!r}")
        if not check_number(commit_interval, "commit_interval") >= 0:
            raise ValueError(f"commit_interval must be >= 0, got {commit_interval}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not check_number(busy_timeout, "busy_timeout") >= 0:
            raise ValueError(f"busy_timeout must be >= 0, got {busy_timeout}")
        self.retention_days, self.retention_rows = retention_days, retention_rows
        self.commit_interval, self.max_batch = float(commit_interval), max_batch
        self.busy_timeout = float(busy_timeout)
        self._closed = False
        self._lock = threading.Lock()       # guards _closed and enqueueing
        self._read_lock = threading.Lock()  # guards the reader connection
        self._queue: queue.Queue = queue.Queue()
        self._writer = self._open(check)
        try:
            self._reader = self._connect()
        except BaseException:
            self._writer.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"event-store {self.path}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------- opening
    def _error(self, cause) -> EventStoreError:
        return EventStoreError(f"event store {self.path}: {cause}")

    def _open_error(self, exc: sqlite3.Error) -> EventStoreError:
        """The error for a failure while opening, saying whether the file is locked or corrupt."""
        cause = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in cause:
            cause = f"locked by another writer for more than {self.busy_timeout:g} s ({exc})"
        elif isinstance(exc, sqlite3.OperationalError):
            cause = f"cannot open ({exc})"
        else:
            cause = f"corrupt or not a SQLite database ({exc})"
        return self._error(cause)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        return conn

    def _open(self, check: bool) -> sqlite3.Connection:
        conn = self._connect()
        try:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect only on a new, empty file
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise self._error(f"cannot switch to WAL mode (journal_mode is {mode})")
            if check:
                problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
                if problems != ["ok"]:
                    raise self._error("corrupt (quick_check: " + "; ".join(problems) + ")")
            conn.execute("BEGIN IMMEDIATE")  # waits busy_timeout for a writer, then fails
            try:
                self._init_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._sync_directory()
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _sync_directory(self) -> None:
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        except OSError:  # a platform that cannot open directories (Windows) has nothing to sync
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_FORMAT_VERSION}")
        elif app_id != _APPLICATION_ID:
            raise self._error(f"not an event store (a SQLite database with application_id {app_id}"
                              f" and {tables} schema objects)")
        elif version != _FORMAT_VERSION:
            raise self._error(f"format version {version}; this rankcore reads version {_FORMAT_VERSION}")

    # ----------------------------------------------------------------------- writing
    def put_events(self, tracking_id: str, user_id: Optional[str], session_id: str,
                   events: Sequence[Mapping]) -> None:
        """Store PutEvents' ``eventList``; return once the events are committed durably.

        ``events`` holds dicts with the wire's keys: ``eventType`` and ``sentAt`` (epoch seconds
        or a datetime, naive taken as UTC) required; ``eventId`` (generated when absent),
        ``eventValue``, ``itemId``, ``properties`` (JSON object string or dict),
        ``recommendationId``, ``impression`` (list of item IDs) optional. ``user_id`` is None for
        an anonymous session. Wrong types or unknown keys raise before anything is stored.
        """
        self._submit(_Job("events", event_rows(tracking_id, user_id, session_id, events, time.time())))

    def put_items(self, dataset_arn: str, items: Sequence[Mapping]) -> None:
        """Store PutItems' ``items`` (``{itemId, properties?}``); the newest row per item wins."""
        self._submit(_Job("items", entity_rows(dataset_arn, items, "items", "itemId", time.time())))

    def put_users(self, dataset_arn: str, users: Sequence[Mapping]) -> None:
        """Store PutUsers' ``users`` (``{userId, properties?}``); the newest row per user wins."""
        self._submit(_Job("users", entity_rows(dataset_arn, users, "users", "userId", time.time())))

    def _submit(self, job: _Job):
        with self._lock:
            if self._closed:
                raise self._error("closed")
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _run(self) -> None:
        """The writer thread: group queued put requests into transactions; run other jobs alone."""
        carry = None
        while True:
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is _STOP:
                return
            if job.call is not None:
                self._finish([job], job.call)
                continue
            batch = [job]
            deadline = time.monotonic() + self.commit_interval
            while len(batch) < self.max_batch:
                wait = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or nxt.call is not None:
                    carry = nxt
                    break
                batch.append(nxt)
            self._finish(batch, self._insert)

    def _finish(self, batch: list, work) -> None:
        """Run ``work(conn, batch)`` in one transaction; on failure retry each job alone."""
        try:
            self._transaction(work, batch)
        except Exception as exc:  # every waiting caller must get an answer
            if len(batch) == 1:
                batch[0].error = exc if isinstance(exc, EventStoreError) else self._error(f"write failed ({exc})")
            else:
                for job in batch:
                    self._finish([job], work)
        finally:
            for job in batch:
                job.done.set()

    def _transaction(self, work, batch: list) -> None:
        conn = self._writer
        if not batch[0].transaction:
            work(conn, batch)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            work(conn, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _insert(conn: sqlite3.Connection, batch: list) -> None:
        seq = conn.execute("SELECT value FROM meta WHERE name = 'last_sequence'").fetchone()[0]
        by_table: dict = {"events": [], "items": [], "users": []}
        for job in batch:
            rows = by_table[job.table]
            for row in job.rows:
                seq += 1
                rows.append((seq, *row))
        for table, rows in by_table.items():
            if rows:
                conn.executemany(_INSERT[table], rows)
        conn.execute("UPDATE meta SET value = ? WHERE name = 'last_sequence'", (seq,))

    # ----------------------------------------------------------------------- reading
    def tail(self, after: int = 0, limit: Optional[int] = 1000) -> list:
        """Records with a sequence above ``after``, in sequence order, at most ``limit`` (None: all).

        One consistent snapshot. A poller keeps the last ``sequence`` it applied and calls
        ``tail(that)`` again: rows commit in sequence order, so none is skipped. Rows removed by
        ``compact()`` before a poller reached them are not returned.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be an int >= 0, got {after!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
        cap = "" if limit is None else f" LIMIT {limit}"
        with self._read_lock:
            conn = self._reader_conn()
            conn.execute("BEGIN")
            try:
                events = [event_record(r) for r in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?"
                                                f" ORDER BY seq{cap}", (after,))]
                items = [ItemRecord(*r) for r in conn.execute(
                    f"SELECT * FROM items WHERE seq > ? ORDER BY seq{cap}", (after,))]
                users = [UserRecord(*r) for r in conn.execute(
                    f"SELECT * FROM users WHERE seq > ? ORDER BY seq{cap}", (after,))]
            finally:
                conn.execute("COMMIT")
        records = sorted(events + items + users, key=lambda r: r.sequence)
        return records if limit is None else records[:limit]

    def replay(self, after: int = 0, limit: Optional[int] = None) -> Iterator[Record]:
        """Yield every record with a sequence above ``after`` in order (at most ``limit``).

        Reads in pages, so it also yields rows committed while it runs.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        left = limit
        while left is None or left > 0:
            page = self.tail(after, _PAGE if left is None else min(_PAGE, left))
            if not page:
                return
            yield from page
            after = page[-1].sequence
            if left is not None:
                left -= len(page)

    def last_sequence(self) -> int:
        """The highest sequence ever assigned (0 for a new store); compaction never lowers it."""
        with self._read_lock:
            conn = self._reader_conn()
            return conn.execute("SELECT value FROM meta WHERE name = 'last_sequence'").fetchone()[0]

    def counts(self) -> dict:
        """Rows stored now: ``{"events": n, "items": n, "users": n}``."""
        with self._read_lock:
            conn = self._reader_conn()
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("events", "items", "users")}

    def _reader_conn(self) -> sqlite3.Connection:
        if self._closed:
            raise self._error("closed")
        return self._reader

    # ----------------------------------------------------------------------- maintenance
    def compact(self, now: Optional[float] = None) -> dict:
        """Apply retention, keep the newest row per item and user, then give free pages back.

        Events received before ``now - retention_days`` (``now`` defaults to the clock) and all
        but the newest ``retention_rows`` events are deleted; so are items and users replaced by
        a later row for the same dataset and ID. Runs on the writer thread, so puts wait while it
        runs. Returns the rows deleted: ``{"events": n, "items": n, "users": n}``.
        """
        now = time.time() if now is None else check_number(now, "now")

        def work(conn, _batch):
            deleted = {"events": 0, "items": 0, "users": 0}
            if self.retention_days is not None:
                cut = now - self.retention_days * 86400.0
                deleted["events"] += conn.execute("DELETE FROM events WHERE received_at < ?", (cut,)).rowcount
            if self.retention_rows is not None:
                deleted["events"] += conn.execute(
                    "DELETE FROM events WHERE seq < (SELECT seq FROM events ORDER BY seq DESC"
                    " LIMIT 1 OFFSET ?)" if self.retention_rows else "DELETE FROM events",
                    (self.retention_rows - 1,) if self.retention_rows else ()).rowcount
            for table, key in (("items", "item_id"), ("users", "user_id")):
                deleted[table] = conn.execute(
                    f"DELETE FROM {table} WHERE seq NOT IN"
                    f" (SELECT max(seq) FROM {table} GROUP BY dataset_arn, {key})").rowcount
            job.result = deleted

        job = _Job(call=work)
        deleted = self._submit(job)
        # Free the pages (executescript steps the pragma to the end; execute would free one
        # page), then copy the WAL into the file and truncate both. In autocommit mode, as a
        # checkpoint cannot run in a transaction; a reader in another process may hold part of
        # the WAL back, and a later checkpoint catches up.
        self._submit(_Job(call=lambda conn, _batch: conn.executescript(
            "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);"), transaction=False))
        return deleted

    # ----------------------------------------------------------------------- export
    def export_interactions_csv(self, path_or_file, tracking_id: Optional[str] = None) -> int:
        """Write the stored events as a Personalize Interactions CSV; return the rows written.

        Columns ``USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE`` and ``EVENT_VALUE`` when any exported
        event has a value (empty where one has none), header row, UTF-8, in sequence order.
        ``TIMESTAMP`` is ``sentAt`` floored to whole epoch seconds. Events without an ``itemId``
        are skipped. An anonymous event (no ``userId``) is attributed to the user of the newest
        event that carried both its ``sessionId`` and a ``userId``, and to the session ID itself
        when no such event exists (as Personalize keys anonymous users by session).
        ``tracking_id`` limits the export to one tracker. A path is written through a temporary
        file in the same directory, synced and renamed into place; a text file object is written
        directly. Puts go on while it runs; it sees the store as of its start.
        """
        if self._closed:
            raise self._error("closed")
        conn = self._connect()  # a connection of its own: one snapshot without holding the reader
        try:
            return write_interactions_csv(conn, path_or_file, tracking_id)
        except sqlite3.Error as exc:
            raise self._error(f"export failed ({exc})") from exc
        finally:
            conn.close()

    # ----------------------------------------------------------------------- closing
    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the database (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        with self._read_lock:
            self._reader.close()
        self._writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.path!r}{', closed' if self._closed else ''})"
