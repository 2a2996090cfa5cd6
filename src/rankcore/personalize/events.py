"""``EventFeed``: PutEvents, PutItems and PutUsers from request to effect, through an event store.

A feed holds one store (an ``EventStore`` on disk, or a ``MemoryEventLog``) and the campaigns
it feeds, each known by its tracking ID and its Items and Users dataset ARNs. A put checks the
request (``event_input``: the service's limits), writes the store (which returns once the rows
are committed) and then applies whatever the store holds past the last record this process
applied (``catch_up``), so the caller sees its own write at once. A background thread
(``start``) calls ``catch_up`` every ``poll_interval`` seconds, so the writes of other processes
sharing the store (the workers of one server) reach this one within that time; the last applied
sequence makes every record apply exactly once per process. Attaching a campaign replays the
store into it (a restart, a model reload). What a record changes is ``live.LiveState``'s.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

from ..errors import EventStoreError, InvalidInputException, ResourceNotFoundException
from .event_input import check_put_events, check_put_items, check_put_users
from .event_log import MemoryEventLog

__all__ = ["EventFeed", "default_tracking_id", "dataset_arn", "POLL_INTERVAL"]

log = logging.getLogger(__name__)

#: Seconds between two polls of the store by the background thread.
POLL_INTERVAL = 0.15
_PAGE = 1000


def default_tracking_id(campaign_arn: str) -> str:
    """A campaign's tracking ID when none is given: a UUID derived from its ARN (stable across
    restarts and the same in every worker)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, campaign_arn))


def dataset_arn(campaign, dataset: str) -> str:
    """``arn:aws:personalize:<region>:<account>:dataset/<campaign name>/<ITEMS|USERS>``."""
    return f"arn:aws:personalize:{campaign.region}:{campaign.account}:dataset/{campaign.name}/{dataset}"


class EventFeed:
    """Campaigns fed by one event store (see the module docstring).

    Parameters
    ----------
    store : EventStore, optional
        Where puts are written; default a ``MemoryEventLog`` (nothing survives the process).
    poll_interval : float
        Seconds between polls of the background thread (``start``).
    compact_interval : float, optional
        With a store: seconds between ``store.compact()`` runs of the background thread (retention
        and newest-row-per-item/user); None never compacts.
    """

    def __init__(self, store=None, *, poll_interval: float = POLL_INTERVAL,
                 compact_interval: float | None = None):
        self.store = store if store is not None else MemoryEventLog()
        self.in_memory = store is None
        self.poll_interval = poll_interval
        self.compact_interval = None if store is None else compact_interval
        self._compacted = float("-inf")
        self._lock = threading.RLock()  # one applier at a time; attach and catch_up
        self._campaigns: dict = {}      # campaign name -> Campaign
        self._tracking: dict = {}       # tracking ID -> campaign name
        self._datasets: dict = {}       # dataset ARN -> (campaign name, "ITEMS" | "USERS")
        self._applied = 0               # last sequence applied to every attached campaign
        self._stop = threading.Event()
        self._thread = None

    # ----------------------------------------------------------------- campaigns
    def attach(self, campaign, tracking_id: str | None = None) -> str:
        """Feed ``campaign`` (replacing one of the same name); returns its tracking ID.

        The store's records so far are replayed into it before it is fed new ones.
        """
        tid = tracking_id or default_tracking_id(campaign.arn)
        if not isinstance(tid, str) or not 1 <= len(tid) <= 256:
            raise ValueError(f"tracking ID must be a string of 1 to 256 characters, got {tid!r}")
        with self._lock:
            owner = self._tracking.get(tid)
            if owner is not None and owner != campaign.name:
                raise ValueError(f"tracking ID {tid!r} is already used by campaign {owner!r}")
            for t in [t for t, n in self._tracking.items() if n == campaign.name]:
                del self._tracking[t]
            self._tracking[tid] = campaign.name
            self._datasets[dataset_arn(campaign, "ITEMS")] = (campaign.name, "ITEMS")
            self._datasets[dataset_arn(campaign, "USERS")] = (campaign.name, "USERS")
            campaign.tracking_id = tid
            campaign._feed = self
            routes = (self._tracking, self._datasets)
            batch = []
            for record in self.store.replay(0):
                if record.sequence > self._applied:
                    break
                if self._route(record, routes) == campaign.name:
                    batch.append(record)
                    if len(batch) >= _PAGE:
                        campaign.live.apply(batch)
                        batch = []
            if batch:
                campaign.live.apply(batch)
            self._campaigns[campaign.name] = campaign
        self.catch_up()
        return tid

    @property
    def campaigns(self) -> dict:
        return dict(self._campaigns)

    @property
    def tracking_ids(self) -> dict:
        """Campaign name -> tracking ID."""
        return {name: tid for tid, name in self._tracking.items()}

    @staticmethod
    def _route(record, routes) -> str | None:
        tracking, datasets = routes
        if record.kind == "event":
            return tracking.get(record.tracking_id)
        target = datasets.get(record.dataset_arn)
        if target is None or target[1] != ("ITEMS" if record.kind == "item" else "USERS"):
            return None
        return target[0]

    def _campaign_for_tracking(self, tracking_id):
        name = self._tracking.get(tracking_id) if isinstance(tracking_id, str) else None
        if name is None:
            raise ResourceNotFoundException(f"Tracking ID {tracking_id} does not exist.")
        return self._campaigns[name]

    def _campaign_for_dataset(self, arn, dataset: str):
        target = self._datasets.get(arn) if isinstance(arn, str) else None
        if target is None or target[1] != dataset:
            raise ResourceNotFoundException(f"Dataset {arn} does not exist.")
        return self._campaigns[target[0]]

    # ----------------------------------------------------------------- writing
    # The puts check the request (``check_*``), then ``write`` stores it; the server checks on its
    # event loop and writes in a thread, the Python API does both at once (``put_*``).
    def check_events(self, tracking_id, user_id, session_id, events) -> tuple:
        """PutEvents' arguments checked: ``InvalidInputException`` or ``ResourceNotFoundException``
        (unknown tracking ID). Returns the arguments of ``store.put_events``."""
        events = check_put_events(tracking_id, user_id, session_id, events)
        self._campaign_for_tracking(tracking_id)
        return tracking_id, user_id, session_id, events

    def check_items(self, dataset_arn, items) -> tuple:
        items = check_put_items(dataset_arn, items)
        self._campaign_for_dataset(dataset_arn, "ITEMS").live.check_items(items)
        return dataset_arn, items

    def check_users(self, dataset_arn, users) -> tuple:
        users = check_put_users(dataset_arn, users)
        self._campaign_for_dataset(dataset_arn, "USERS").live.check_users(users)
        return dataset_arn, users

    def put_events(self, tracking_id, user_id, session_id, events) -> None:
        """PutEvents: check, store durably, apply (nothing is stored when a check fails)."""
        self.write("events", self.check_events(tracking_id, user_id, session_id, events))

    def put_items(self, dataset_arn, items) -> None:
        """PutItems to a campaign's Items dataset ARN."""
        self.write("items", self.check_items(dataset_arn, items))

    def put_users(self, dataset_arn, users) -> None:
        """PutUsers to a campaign's Users dataset ARN."""
        self.write("users", self.check_users(dataset_arn, users))

    def write(self, kind: str, checked: tuple, apply: bool = True) -> None:
        """Store ``checked`` (what ``check_<kind>`` returned); returns once it is committed.

        ``apply``: apply it (and whatever else is new) before returning; otherwise the background
        thread does within ``poll_interval`` (the server's choice: a put then waits only for the
        disk, and the effects of many puts are applied together)."""
        put = {"events": self.store.put_events, "items": self.store.put_items,
               "users": self.store.put_users}[kind]
        try:
            put(*checked)
        except EventStoreError:  # the store failed: not the caller's input
            raise
        except (TypeError, ValueError) as exc:
            raise InvalidInputException(str(exc)) from None
        if apply:
            self.catch_up()

    # ----------------------------------------------------------------- applying
    def catch_up(self) -> int:
        """Apply every stored record past the last one applied; returns how many were read."""
        n = 0
        with self._lock:
            routes = (self._tracking, self._datasets)
            while True:
                page = self.store.tail(self._applied, _PAGE)
                if not page:
                    return n
                groups: dict = {}
                for record in page:
                    name = self._route(record, routes)
                    if name is not None:
                        groups.setdefault(name, []).append(record)
                for name, records in groups.items():
                    self._campaigns[name].live.apply(records)
                self._applied = page[-1].sequence
                n += len(page)
                if len(page) < _PAGE:
                    return n

    def start(self) -> None:
        """Start the background thread that applies other processes' writes (idempotent)."""
        if self._thread is not None:
            return

        def run():
            while not self._stop.wait(self.poll_interval):
                try:
                    self.catch_up()
                    self.maybe_compact()
                except Exception:  # keep polling whatever one poll met
                    log.exception("applying stored events")

        self._thread = threading.Thread(target=run, name="rankcore-events", daemon=True)
        self._thread.start()

    def maybe_compact(self, now: float | None = None) -> dict | None:
        """Compact the store when ``compact_interval`` has passed since the last time."""
        now = time.monotonic() if now is None else now
        if self.compact_interval is None or now - self._compacted < self.compact_interval:
            return None
        self._compacted = now
        deleted = self.store.compact()
        if any(deleted.values()):
            log.info("event store compacted: %s rows deleted", deleted)
        return deleted

    def close(self) -> None:
        """Stop the background thread and close the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.store.close()
