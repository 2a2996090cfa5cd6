"""``GET /metrics``: request counters, a latency histogram and model reloads, by prometheus_client.

One :class:`Metrics` per process. With ``--workers N`` the server gives every worker the same
private directory in ``PROMETHEUS_MULTIPROC_DIR`` (set before the workers start, as
prometheus_client's multiprocess mode needs), and a scrape of any worker aggregates the files of
all of them: counters and the histogram are summed, the model generation gauge is the lowest one
a live worker serves. :func:`start_multiprocess_dir` and :func:`mark_worker_dead` manage it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

from .registry import CampaignRegistry

__all__ = ["Metrics", "CONTENT_TYPE", "start_multiprocess_dir", "mark_worker_dead"]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
_ENV = "PROMETHEUS_MULTIPROC_DIR"
prometheus_client.disable_created_metrics()  # no *_created series: nothing here needs them


def start_multiprocess_dir() -> str:
    """Create a private metrics directory for this server's workers and export it (removed at
    exit). Call before any worker starts."""
    path = tempfile.mkdtemp(prefix="rankcore-metrics-")
    os.environ[_ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges from the aggregate."""
    if os.environ.get(_ENV):
        multiprocess.mark_process_dead(pid)


class Metrics:
    """The server's metrics; multiprocess-aggregated when ``PROMETHEUS_MULTIPROC_DIR`` is set."""

    BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self):
        self.multiprocess = bool(os.environ.get(_ENV))
        # in multiprocess mode the metrics live in files and a fresh registry collects them
        self.registry = None if self.multiprocess else CollectorRegistry()
        reg = self.registry
        self._requests = Counter("rankcore_requests", "HTTP requests by operation and status.",
                                 ["operation", "status"], registry=reg)
        self._errors = Counter("rankcore_errors", "Error responses by x-amzn-ErrorType.", ["type"],
                               registry=reg)
        self._latency = Histogram("rankcore_request_duration_seconds",
                                  "GetPersonalizedRanking time in the server.", buckets=self.BUCKETS,
                                  registry=reg)
        self._reloads = Counter("rankcore_model_reloads", "Successful model swaps per campaign.",
                                ["campaign"], registry=reg)
        self._failures = Counter("rankcore_model_reload_failures", "Failed model reloads per campaign.",
                                 ["campaign"], registry=reg)
        self._generation = Gauge("rankcore_model_generation", "Model generation served per campaign.",
                                 ["campaign"], registry=reg, multiprocess_mode="livemin")
        self._children: dict = {}  # (operation, status) -> counter child: no label lookup per request
        if self.multiprocess:
            atexit.register(mark_worker_dead, os.getpid())

    def attach(self, registry: CampaignRegistry) -> None:
        """Follow ``registry``'s reloads."""
        for name, generation in registry.generations.items():
            self._reloads.labels(name)
            self._failures.labels(name)
            self._generation.labels(name).set(generation)
        registry.listeners.append(self._on_reload)

    def _on_reload(self, campaign: str, ok: bool, generation: int) -> None:
        (self._reloads if ok else self._failures).labels(campaign).inc()
        self._generation.labels(campaign).set(generation)

    def observe(self, operation: str, status: int, error: str | None, seconds: float | None) -> None:
        key = (operation, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(operation, str(status))
        child.inc()
        if error is not None:
            self._errors.labels(error).inc()
        if seconds is not None:
            self._latency.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text of this process, or of every worker in multiprocess mode."""
        if self.multiprocess:
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.registry)
