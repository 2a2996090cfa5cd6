"""``GET /metrics``: request counters, a latency histogram and model reloads, as Prometheus text.

One :class:`Metrics` per process (with ``--workers N`` each worker counts only its own requests),
updated only from the event-loop thread, so the request path takes no lock.
"""
from __future__ import annotations

import bisect

from .registry import CampaignRegistry

__all__ = ["Metrics"]


class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format."""

    BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self):
        self.requests: dict = {}   # (operation, status) -> count
        self.errors: dict = {}     # error type -> count
        self.buckets = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, operation: str, status: int, error: str | None, seconds: float | None) -> None:
        key = (operation, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
        if seconds is not None:
            self.buckets[bisect.bisect_left(self.BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, registry: CampaignRegistry | None = None) -> str:
        lines = _header("rankcore_requests_total", "counter", "HTTP requests by operation and status.")
        for (op, status), n in sorted(self.requests.items()):
            lines.append(f'rankcore_requests_total{{operation="{op}",status="{status}"}} {n}')
        lines += _header("rankcore_errors_total", "counter", "Error responses by x-amzn-ErrorType.")
        for name, n in sorted(self.errors.items()):
            lines.append(f'rankcore_errors_total{{type="{name}"}} {n}')
        lines += _header("rankcore_request_duration_seconds", "histogram",
                         "GetPersonalizedRanking time in the server.")
        cum = 0
        for le, n in zip(self.BUCKETS, self.buckets):
            cum += n
            lines.append(f'rankcore_request_duration_seconds_bucket{{le="{le}"}} {cum}')
        lines.append(f'rankcore_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"rankcore_request_duration_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"rankcore_request_duration_seconds_count {self.latency_count}")
        if registry is not None:
            for metric, kind, text, values in (
                    ("rankcore_model_reloads_total", "counter", "Successful model swaps per campaign.",
                     registry.reloads),
                    ("rankcore_model_reload_failures_total", "counter", "Failed model reloads per campaign.",
                     registry.reload_failures),
                    ("rankcore_model_generation", "gauge", "Model generation served per campaign.",
                     registry.generations)):
                lines += _header(metric, kind, text)
                lines += [f'{metric}{{campaign="{n}"}} {v}' for n, v in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _header(metric: str, kind: str, text: str) -> list:
    return [f"# HELP {metric} {text}", f"# TYPE {metric} {kind}"]
