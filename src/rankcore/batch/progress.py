"""What a batch job reports: the :class:`BatchSummary` it returns and the progress line it shows
on a terminal while it runs."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchSummary:
    """What a job did: input ``lines``, ``failed`` lines, input ``items`` ranked, wall ``seconds``."""

    lines: int
    failed: int
    items: int
    seconds: float
    output: str = ""
    partitions: int = 0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.lines:,} lines ({self.failed:,} failed), {self.items:,} items in "
                f"{self.seconds:.2f} s: {self.lines_per_second:,.0f} lines/s, "
                f"{self.items_per_second:,.0f} items/s -> {self.output}")


class _Progress:
    """A one-line progress display on a terminal: lines, items/s, percent and ETA by bytes."""

    def __init__(self, total_bytes: int, stream=None, interval: float = 0.2):
        self.total = max(int(total_bytes), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.lines = self.items = self.bytes = 0

    def update(self, lines: int, items: int, nbytes: int, force: bool = False) -> None:
        self.lines += lines
        self.items += items
        self.bytes += nbytes
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        frac = min(self.bytes / self.total, 1.0)
        eta = (dt / frac - dt) if frac > 0 else float("nan")
        eta_s = "--:--" if eta != eta else _hms(eta)
        self.stream.write(f"\r{self.lines:>12,} lines  {self.items / dt / 1e6:7.2f}M items/s  "
                          f"{frac * 100:5.1f}%  ETA {eta_s} ")
        self.stream.flush()

    def close(self) -> None:
        self.update(0, 0, 0, force=True)
        self.stream.write("\n")
        self.stream.flush()


def _hms(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
