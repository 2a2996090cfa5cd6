"""What a batch job reports: the :class:`BatchSummary` it returns, the first few failed lines it
names (:class:`_FailedLines`), and the progress bar (tqdm) it shows on a terminal while it runs."""
from __future__ import annotations

import sys
from dataclasses import dataclass

#: How many failed lines a summary names.
FAILED_LINES_SHOWN = 5


@dataclass(frozen=True)
class BatchSummary:
    """What a job did: input ``lines``, ``failed`` lines, input ``items`` ranked, wall ``seconds``;
    ``failed_lines``: the first few failed lines as ``(input file, line number from 1)``."""

    lines: int
    failed: int
    items: int
    seconds: float
    output: str = ""
    partitions: int = 0
    failed_lines: tuple = ()

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        failed = f"{self.failed:,} failed"
        if self.failed_lines:
            where = ", ".join(f"{path}:{line}" for path, line in self.failed_lines)
            failed += f": {where}{', ...' if self.failed > len(self.failed_lines) else ''}"
        return (f"{self.lines:,} lines ({failed}), {self.items:,} items in "
                f"{self.seconds:.2f} s: {self.lines_per_second:,.0f} lines/s, "
                f"{self.items_per_second:,.0f} items/s -> {self.output}")


class _FailedLines:
    """The first :data:`FAILED_LINES_SHOWN` failed lines of a job as ``(path, line)``; partitions
    must be added in input order, each with its line count and its failed lines (from 0)."""

    def __init__(self):
        self.found: list = []
        self._lines_before: dict = {}

    def add(self, partition, n_lines: int, failed_at) -> None:
        before = self._lines_before.get(partition.path, 0)
        self._lines_before[partition.path] = before + n_lines
        for j in failed_at:
            if len(self.found) < FAILED_LINES_SHOWN:
                self.found.append((partition.path, before + j + 1))


class _Progress:
    """A tqdm progress bar by input bytes, with the lines and items ranked so far."""

    def __init__(self, total_bytes: int, stream=None):
        from tqdm import tqdm  # lazy: optional third-party dependency (the batch extra)

        self.bar = tqdm(total=max(int(total_bytes), 1), unit="B", unit_scale=True,
                        unit_divisor=1024, desc="rankcore batch", dynamic_ncols=True,
                        file=stream if stream is not None else sys.stderr)
        self.lines = self.items = 0

    def update(self, lines: int, items: int, nbytes: int) -> None:
        self.lines += lines
        self.items += items
        self.bar.set_postfix_str(f"{self.lines:,} lines, {self.items:,} items", refresh=False)
        self.bar.update(nbytes)

    def close(self) -> None:
        self.bar.close()
