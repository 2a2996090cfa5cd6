"""The input of a batch job: files (paths and globs) split into byte-range partitions.

A partition is the unit of distribution, retry and part files. A line belongs to the partition in
which it starts, so partitions of any size cover every line of every file exactly once.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..errors import BatchError

#: Input bytes per partition.
DEFAULT_PARTITION_BYTES = 64 << 20


@dataclass(frozen=True)
class Partition:
    """Lines of ``path`` that start in the byte range ``[start, end)``; ``index`` orders the output."""

    index: int
    path: str
    start: int
    end: int

    @property
    def part_name(self) -> str:
        return f"part-{self.index:05d}.jsonl"


def plan_partitions(paths: Sequence[str], partition_bytes: int = DEFAULT_PARTITION_BYTES) -> list:
    """Split ``paths`` (in order) into byte-range partitions of about ``partition_bytes``."""
    if partition_bytes < 1:
        raise ValueError(f"partition size must be >= 1 byte, got {partition_bytes}")
    parts: list = []
    for path in paths:
        size = os.path.getsize(path)
        for start in range(0, size, partition_bytes):
            parts.append(Partition(len(parts), path, start, min(start + partition_bytes, size)))
    return parts


def _partition_lines(part: Partition, counter: list | None = None) -> Iterator[bytes]:
    """The lines starting in ``[part.start, part.end)``, newline included; ``counter[0]`` counts
    the bytes consumed."""
    with open(part.path, "rb", buffering=1 << 20) as f:
        pos = part.start
        if pos > 0:  # the line running through ``start`` belongs to the previous partition
            f.seek(pos - 1)
            pos += len(f.readline()) - 1
        end = part.end
        while pos < end:
            line = f.readline()
            if not line:
                break
            pos += len(line)
            if counter is not None:
                counter[0] += len(line)
            yield line


def _expand_inputs(input) -> list:
    """The input files of ``input`` (a path, a glob, or a list of them), in order, globs sorted."""
    specs = [input] if isinstance(input, (str, os.PathLike)) else list(input)
    paths: list = []
    for spec in specs:
        spec = os.fspath(spec)
        if glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise BatchError(f"no input file matches {spec!r}")
            paths.extend(found)
        elif os.path.isfile(spec):
            paths.append(spec)
        else:
            raise BatchError(f"input file {spec!r} does not exist")
    return paths
