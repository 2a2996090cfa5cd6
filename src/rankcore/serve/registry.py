"""The served campaigns and their hot swap (UpdateCampaign).

A :class:`CampaignRegistry` holds one ``Campaign`` per ``NAME=DIR`` and a ``Client`` over all of
them. A reload (the directory's ``manifest.json`` changed, checked every ``reload_interval``
seconds by a background thread, or SIGHUP) loads the new model, builds a new ``Campaign`` (its
filters re-created) and a new ``Client``, then publishes the client with one assignment. A request
reads ``registry.client`` once, so it is answered wholly by the old or wholly by the new model and
nothing waits during the swap. A model that fails to load is logged and the old one keeps serving.
``Model.save`` writes the manifest last, so saving into the served directory triggers one reload.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..model import load_model
from ..personalize import DEFAULT_ACCOUNT, DEFAULT_REGION, Campaign, Client

__all__ = ["CampaignSpec", "CampaignRegistry", "DEFAULT_RELOAD_INTERVAL"]

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = 2.0


@dataclass
class CampaignSpec:
    """One served campaign: its name, model directory and filters ``[(name, expression)]``."""

    name: str
    path: str
    filters: list = field(default_factory=list)


def _manifest_stamp(path: str):
    try:
        st = os.stat(os.path.join(path, "manifest.json"))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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
        ``loader(path) -> Model`` (default ``load_model(path, mmap=True)``).

    Attributes
    ----------
    client : rankcore.Client
        The current client; replaced (never mutated) on every reload. Read it once per request.
    """

    def __init__(self, specs: Sequence[CampaignSpec], *, region: str = DEFAULT_REGION,
                 account: str = DEFAULT_ACCOUNT, max_input_items: int | None = 500,
                 backend: str | None = None, loader: Callable | None = None):
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
        self._loader = loader or (lambda p: load_model(p, mmap=True))
        self._lock = threading.Lock()  # serialises reloads (readers never lock)
        self._stamps: dict = {}
        self.generations: dict = {}
        self.reloads: dict = {}
        self.reload_failures: dict = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_all = False
        self._thread: threading.Thread | None = None
        campaigns = {}
        for spec in specs:
            self._stamps[spec.name] = _manifest_stamp(spec.path)
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
            stamp = _manifest_stamp(spec.path)
            try:
                campaign = self._build(spec)
            except Exception as exc:
                self.reload_failures[name] += 1
                self._stamps[name] = stamp  # do not retry the same broken model in a loop
                log.error("campaign %s: reloading %s failed, still serving the previous model: %s",
                          name, spec.path, exc)
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
        return True

    def check(self) -> list:
        """Reload every campaign whose manifest changed (or all after ``request_reload``)."""
        reload_all, self._reload_all = self._reload_all, False
        done = []
        for name, spec in self.specs.items():
            stamp = _manifest_stamp(spec.path)
            if reload_all or (stamp is not None and stamp != self._stamps.get(name)):
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
                        self.check()
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
