"""The served campaigns and their hot swap (UpdateCampaign).

A :class:`CampaignRegistry` holds one ``Campaign`` per ``NAME=DIR`` and a ``Client`` over all of
them. A reload (a file of the directory changed, checked every ``reload_interval`` seconds by a
background thread, or SIGHUP) loads the new model, builds a new ``Campaign`` (its filters
re-created) and a new ``Client``, then publishes the client with one assignment. A request reads
``registry.client`` once, so it is answered wholly by the old or wholly by the new model and
nothing waits during the swap. A model that fails to load, or takes longer than
``reload_timeout``, is logged and counted and the old one keeps serving; the next change (or
SIGHUP) is tried again. Models are read into private memory (see :class:`CampaignRegistry` for
why and what it costs).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..model import load_model
from ..model.storage import MANIFEST
from ..personalize import DEFAULT_ACCOUNT, DEFAULT_REGION, Campaign, Client

__all__ = ["CampaignSpec", "CampaignRegistry", "DEFAULT_RELOAD_INTERVAL"]

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = 2.0
DEFAULT_RELOAD_TIMEOUT = 300.0


@dataclass
class CampaignSpec:
    """One served campaign: its name, model directory and filters ``[(name, expression)]``."""

    name: str
    path: str
    filters: list = field(default_factory=list)


def _dir_stamp(path: str):
    """``(name, inode, mtime, size)`` of every file in the directory (temporary files aside), or
    None without a manifest: any write, rename or truncation in the directory changes it."""
    try:
        with os.scandir(path) as it:
            entries = [(e.name, e.stat()) for e in it if not e.name.endswith(".tmp")]
    except OSError:
        return None
    if not any(name == MANIFEST for name, _ in entries):
        return None
    return tuple(sorted((name, st.st_ino, st.st_mtime_ns, st.st_size) for name, st in entries))


def _default_loader(path: str):
    return load_model(path, mmap=False)


def _warm_up(campaign: Campaign) -> None:
    """Rank a few items once, so JIT compilation and page faults happen before serving."""
    model = campaign.model
    n = min(model.n_items, 8)
    if n:
        ids = [model.item_ids[i] for i in range(n)]
        campaign.rank("", ids)
        campaign.rank_batch([("", ids)])


class CampaignRegistry:
    """The served campaigns, swapped atomically when a model directory changes.

    Parameters
    ----------
    specs : sequence of CampaignSpec
    region, account : str
        Used in the campaign and filter ARNs.
    max_input_items : int or None
        The ``inputList`` limit enforced by the ``Client`` (500 by default).
    backend : str, optional
        Kernel backend of every ``Campaign``.
    loader : callable, optional
        ``loader(path) -> Model`` (default ``load_model(path, mmap=False)``).
    reload_timeout : float
        Seconds a reload may take before it is given up (counted as a failure, old model kept).
    events : EventFeed, optional
        The feed of PutEvents, PutItems and PutUsers: every campaign built (at start and on
        reload) is attached to it, which replays the feed's store into it.
    tracking_ids : dict, optional
        Campaign name -> tracking ID (default: derived from the campaign ARN).

    Notes
    -----
    Why the models are read and not memory-mapped: a mapped file that is truncated under the
    server kills it with SIGBUS on the next request that touches the lost pages (MAP_PRIVATE
    faults the same way), and an in-place overwrite of a mapped file changes the answers of the
    running model, row by row, before its manifest says so. A private copy costs resident memory
    equal to the model's files (the item table dominates: n_items x padded_dim x the bytes of its
    dtype), per worker process, and the page cache holds the files' pages until the kernel needs them.

    Which writes are safe: anything. A new model is picked up when a file of the directory
    changes and then stays unchanged for one check (the watcher waits for the directory to
    settle, and throws away a load during which a file changed), so ``Model.save`` into the
    served directory (each file renamed into place, the manifest last), renaming a new directory
    into place, and even ``cp -r new/. live/`` swap models; a truncated or half-written file
    makes the reload fail (counted in ``/metrics``) while the old model keeps serving. Renaming
    into place is the way to get exactly one reload.

    Attributes
    ----------
    client : rankcore.Client
        The current client; replaced (never mutated) on every reload. Read it once per request.
    """

    def __init__(self, specs: Sequence[CampaignSpec], *, region: str = DEFAULT_REGION,
                 account: str = DEFAULT_ACCOUNT, max_input_items: int | None = 500,
                 backend: str | None = None, loader: Callable | None = None,
                 reload_timeout: float = DEFAULT_RELOAD_TIMEOUT, events=None,
                 tracking_ids: dict | None = None):
        names = [s.name for s in specs]
        if not specs:
            raise ValueError("no campaign to serve (give --campaign NAME=DIR)")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate campaign names in {names}")
        self.specs = {s.name: s for s in specs}
        self.region = region
        self.account = account
        self.max_input_items = max_input_items
        self.backend = backend
        self._loader = loader or _default_loader
        self.reload_timeout = reload_timeout
        self.events = events
        self.tracking_ids = dict(tracking_ids or {})
        unknown = set(self.tracking_ids) - set(names)
        if unknown:
            raise ValueError(f"tracking ID for unknown campaign(s) {sorted(unknown)}")
        self._lock = threading.Lock()  # serialises reloads (readers never lock)
        self._stamps: dict = {}   # campaign -> directory stamp of the model served (or last tried)
        self._seen: dict = {}     # campaign -> directory stamp at the previous settled check
        self.listeners: list = []  # f(campaign, ok, generation) after every reload attempt
        self.generations: dict = {}
        self.reloads: dict = {}
        self.reload_failures: dict = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_all = False
        self._thread: threading.Thread | None = None
        campaigns = {}
        for spec in specs:
            self._stamps[spec.name] = _dir_stamp(spec.path)
            campaigns[spec.name] = self._build(spec)
            self.generations[spec.name] = 1
            self.reloads[spec.name] = 0
            self.reload_failures[spec.name] = 0
        self.campaigns = campaigns
        self.client = Client(list(campaigns.values()), max_input_items=max_input_items)

    def _build(self, spec: CampaignSpec) -> Campaign:
        model = self._loader(spec.path)
        campaign = Campaign(model, name=spec.name, region=self.region, account=self.account,
                            backend=self.backend)
        for fname, expr in spec.filters:
            campaign.create_filter(fname, expr)
        if self.events is not None:
            self.events.attach(campaign, self.tracking_ids.get(spec.name))
        _warm_up(campaign)
        return campaign

    @property
    def campaign_arns(self) -> dict:
        return {name: c.arn for name, c in self.campaigns.items()}

    @property
    def filter_arns(self) -> dict:
        """Campaign name -> list of filter ARNs."""
        return {name: sorted(c.filters) for name, c in self.campaigns.items()}

    def reload(self, name: str) -> bool:
        """Load campaign ``name``'s model again and swap it in; False (old one kept) on failure."""
        spec = self.specs[name]
        with self._lock:
            stamp = _dir_stamp(spec.path)
            try:
                campaign = self._build_within_timeout(spec)
            except Exception as exc:
                self._stamps[name] = stamp  # do not retry the same broken model in a loop
                self._failed(name, f"reloading {spec.path} failed, still serving the previous "
                                   f"model: {exc}")
                return False
            if _dir_stamp(spec.path) != stamp:  # written to while it was read: try again later
                log.info("campaign %s: %s changed while it was loaded; loading it again", name, spec.path)
                return False
            campaigns = dict(self.campaigns)
            campaigns[name] = campaign
            client = Client(list(campaigns.values()), max_input_items=self.max_input_items)
            self.campaigns = campaigns
            self.client = client  # the swap: one assignment
            self._stamps[name] = stamp
            self.generations[name] += 1
            self.reloads[name] += 1
        log.warning("campaign %s: reloaded the model in %s (generation %d)", name, spec.path,
                    self.generations[name])
        self._notify(name, True)
        return True

    def _failed(self, name: str, message: str) -> None:
        self.reload_failures[name] += 1
        log.error("campaign %s: %s", name, message)
        self._notify(name, False)

    def _notify(self, name: str, ok: bool) -> None:
        for listener in self.listeners:
            try:
                listener(name, ok, self.generations[name])
            except Exception:  # pragma: no cover - a metrics hook must not stop reloads
                log.exception("reload listener")

    def _build_within_timeout(self, spec: CampaignSpec) -> Campaign:
        """:meth:`_build` in its own thread, given up after ``reload_timeout`` seconds.

        A load that hangs (a file system that stops answering) is left to finish or hang in its
        daemon thread; its result is never used, and the watcher goes on with later changes.
        """
        result: dict = {}

        def run():
            try:
                result["campaign"] = self._build(spec)
            except BaseException as exc:  # handed to the waiting thread
                result["error"] = exc

        t = threading.Thread(target=run, name=f"rankcore-load-{spec.name}", daemon=True)
        t.start()
        t.join(self.reload_timeout)
        if t.is_alive():
            raise TimeoutError(f"gave up after {self.reload_timeout:g} s")
        if "error" in result:
            raise result["error"]
        return result["campaign"]

    def check(self, settle: bool = False) -> list:
        """Reload every campaign whose directory changed (or all after ``request_reload``).

        ``settle``: reload only a directory that has not changed since the previous check.
        """
        reload_all, self._reload_all = self._reload_all, False
        done = []
        for name, spec in self.specs.items():
            stamp = _dir_stamp(spec.path)
            seen, self._seen[name] = self._seen.get(name), stamp
            changed = stamp is not None and stamp != self._stamps.get(name)
            if reload_all or (changed and (not settle or stamp == seen)):
                if self.reload(name):
                    done.append(name)
        return done

    def request_reload(self) -> None:
        """Reload every campaign soon, in the watcher thread (safe from a signal handler)."""
        self._reload_all = True
        self._wake.set()

    def reload_on_sighup(self) -> None:
        """Make SIGHUP call :meth:`request_reload` (main thread only; needs the watcher)."""
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def start_watcher(self, interval: float | None = DEFAULT_RELOAD_INTERVAL) -> None:
        """Start the background thread that checks the directories every ``interval`` seconds
        (``None``: only on ``request_reload``)."""
        if self._thread is not None:
            return

        def run():
            while not self._stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    if interval is not None or self._reload_all:
                        self.check(settle=True)
                except Exception:  # pragma: no cover - keep watching whatever happens
                    log.exception("model watcher")

        self._thread = threading.Thread(target=run, name="rankcore-model-watcher", daemon=True)
        self._thread.start()

    def stop_watcher(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
