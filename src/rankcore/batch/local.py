"""The local engine of a batch job, and the partition task that the Dask engine ships to workers.

Lines stream through in chunks: ``_PIPELINE_DEPTH`` chunks are ranked at once on a small thread
pool (the kernel releases the GIL, so one chunk's kernel runs while another is parsed or
serialised), each chunk's output written in order as soon as it is ready, so memory stays bounded
whatever the input size. A model directory is loaded memory-mapped once per process and cached
with its compiled filter (:func:`_serving`), so a Dask worker loads it once whatever the number of
partitions it ranks. :func:`rank_partition` must stay at module level: Dask pickles it by name.
"""
from __future__ import annotations

import gc
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable

from ..errors import BatchError
from ..filters import compile_filter
from ..model import load_model
from ..personalize import Campaign
from .chunks import DEFAULT_CHUNK_SIZE, _chunks, _rank_chunk
from .output import _finish_parts, _remove, _temporary_name, _write_atomically
from .partitions import Partition, _partition_lines
from .progress import FAILED_LINES_SHOWN, _FailedLines

#: Chunks ranked at once (threads): one chunk's kernel overlaps another's parsing/serialising.
_PIPELINE_DEPTH = 2

#: First-generation threshold of the garbage collector while streams run. A chunk allocates big
#: containers (a list per line of item IDs, a tuple per line of ranked IDs, ...) that die with the
#: chunk without cycles; at the default 700 the collector keeps traversing them. Collections still
#: happen, so memory stays bounded.
_GC_THRESHOLD0 = 100_000
_GC_LOCK = threading.Lock()
_GC_STATE: list = [0, None]  # streams running, thresholds to restore

#: Set by ``main``'s SIGTERM handler. The handler also raises KeyboardInterrupt, but an exception
#: raised inside a finalizer or weakref callback is swallowed by Python, so the loops check this
#: flag between chunks and partitions as well.
_STOP = threading.Event()

_CACHE: dict = {}  # (model directory, filter expression) -> (campaign, filter plan)
_CACHE_LOCK = threading.Lock()


def _check_stop() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


def _compile_filter(expression: str, data=None):
    """The plan of ``expression``, checked against ``data``'s schema when given; a bad expression
    raises ``BatchError``."""
    try:
        plan = compile_filter(expression)
        if data is not None:
            plan.validate(data)
    except ValueError as exc:
        raise BatchError(f"invalid filter expression: {exc}") from None
    return plan


def _serving(model, filter_expression: str | None) -> tuple:
    """``(campaign, filter plan)`` for ``model`` (a Campaign, a Model or a model directory); a
    directory is loaded memory-mapped once per process and cached with its compiled filter."""
    if isinstance(model, (str, os.PathLike)):
        key = (os.path.abspath(os.fspath(model)), filter_expression)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is None:
                campaign = Campaign(load_model(key[0], mmap=True))
                plan = _compile_filter(filter_expression, campaign.data) if filter_expression else None
                hit = _CACHE[key] = (campaign, plan)
        return hit
    campaign = model if isinstance(model, Campaign) else Campaign(model)
    plan = _compile_filter(filter_expression, campaign.data) if filter_expression else None
    return campaign, plan


@contextmanager
def _gc_relaxed():
    """Raise the collector's first-generation threshold while at least one stream runs."""
    with _GC_LOCK:
        if _GC_STATE[0] == 0:
            old = gc.get_threshold()
            if old[0] and old[0] < _GC_THRESHOLD0:
                _GC_STATE[1] = old
                gc.set_threshold(_GC_THRESHOLD0, *old[1:])
        _GC_STATE[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_STATE[0] -= 1
            if _GC_STATE[0] == 0 and _GC_STATE[1] is not None:
                gc.set_threshold(*_GC_STATE[1])
                _GC_STATE[1] = None


def _rank_stream(campaign, plan, lines: Iterable[bytes], chunk_size: int, write: Callable,
                 on_chunk: Callable | None = None, counter: list | None = None,
                 failed_at: list | None = None, ranker: Callable | None = None) -> tuple:
    """Rank ``lines`` chunk by chunk, ``write(bytes)`` each chunk's output in order; ``(lines,
    failed, items)``. ``on_chunk(lines, items, nbytes)`` follows each chunk written, ``nbytes``
    being what ``counter[0]`` (bytes read, reset here) counted for the chunk. The first
    ``FAILED_LINES_SHOWN`` failed lines (from 0) are appended to ``failed_at``. ``ranker(campaign,
    chunk, plan)`` answers a chunk (None: ``_rank_chunk``, looked up at call time).
    """
    totals = [0, 0, 0]

    def finish(n_lines: int, nbytes: int, result: tuple) -> None:
        out, f, i = result
        if f and failed_at is not None and len(failed_at) < FAILED_LINES_SHOWN:
            # only a line that failed lacks the success suffix (see lines._ok_line)
            failed_at.extend([totals[0] + j for j, line in enumerate(out)
                              if not line.endswith(b',"error":null}')][:FAILED_LINES_SHOWN - len(failed_at)])
        out.append(b"")
        write(b"\n".join(out))
        totals[0] += n_lines
        totals[1] += f
        totals[2] += i
        if on_chunk is not None:
            on_chunk(n_lines, i, nbytes)

    def read_bytes() -> int:
        if counter is None:
            return 0
        nbytes, counter[0] = counter[0], 0
        return nbytes

    with _gc_relaxed():
        if _PIPELINE_DEPTH <= 1:
            for chunk in _chunks(lines, chunk_size):
                _check_stop()
                finish(len(chunk), read_bytes(), (ranker or _rank_chunk)(campaign, chunk, plan))
        else:
            _rank_pipelined(campaign, plan, _chunks(lines, chunk_size), _PIPELINE_DEPTH,
                            read_bytes, finish, ranker)
    return tuple(totals)


def _rank_pipelined(campaign, plan, chunks: Iterable[list], depth: int, read_bytes: Callable,
                    finish: Callable, ranker: Callable | None = None) -> None:
    """Rank ``chunks`` ``depth`` at a time on a thread pool, ``finish`` each in order."""
    pending: deque = deque()
    rank = ranker or _rank_chunk
    pool = ThreadPoolExecutor(depth, thread_name_prefix="rankcore-batch")
    try:
        for chunk in chunks:
            _check_stop()
            pending.append((len(chunk), read_bytes(), pool.submit(rank, campaign, chunk, plan)))
            del chunk  # the pool holds the only reference: freed once ranked
            if len(pending) >= depth:
                n_lines, nbytes, fut = pending.popleft()
                finish(n_lines, nbytes, fut.result())
        while pending:
            _check_stop()
            n_lines, nbytes, fut = pending.popleft()
            finish(n_lines, nbytes, fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # at most the chunks in flight


def rank_partition(model, partition: Partition, *, filter_expression: str | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, part_dir: str | None = None,
                   ranker: Callable | None = None) -> dict:
    """Rank one partition (the task both engines run).

    With ``part_dir`` the output goes to ``part_dir/part-NNNNN.jsonl`` (temporary name, then
    renamed: a retried task replaces, never duplicates); otherwise it is returned as ``"data"``.
    Returns ``{"index", "lines", "failed", "items", "failed_at", "data"}``, ``failed_at`` being the
    first few failed lines of the partition (from 0). ``ranker`` answers a chunk (see
    ``_rank_stream``; picklable for Dask).
    """
    campaign, plan = _serving(model, filter_expression)
    lines = _partition_lines(partition)
    failed_at: list = []
    if part_dir is None:
        buf: list = []
        n, failed, items = _rank_stream(campaign, plan, lines, chunk_size, buf.append,
                                        failed_at=failed_at, ranker=ranker)
        data = b"".join(buf)
    else:
        stats: list = []

        def fill(f):
            stats.extend(_rank_stream(campaign, plan, lines, chunk_size, f.write,
                                      failed_at=failed_at, ranker=ranker))

        _write_atomically(os.path.join(part_dir, partition.part_name), fill)
        n, failed, items = stats
        data = None
    return {"index": partition.index, "lines": n, "failed": failed, "items": items,
            "failed_at": failed_at, "data": data}


def _run_local(model, partitions: list, output: str, filter_expression: str | None,
               chunk_size: int, parts: bool, report: Callable | None,
               failed_lines: _FailedLines | None = None, ranker: Callable | None = None) -> tuple:
    """Rank ``partitions`` in this process into ``output``: ``(lines, failed, items)``; the first
    failed lines go to ``failed_lines``."""
    campaign, plan = _serving(model, filter_expression)
    totals = [0, 0, 0]
    counter = [0]

    def stream(part, write):
        failed_at: list = []
        res = _rank_stream(campaign, plan, _partition_lines(part, counter), chunk_size, write,
                           report, counter, failed_at, ranker)
        if failed_lines is not None:
            failed_lines.add(part, res[0], failed_at)
        for k in range(3):
            totals[k] += res[k]
        return res

    if not parts:
        def fill(f):
            for part in partitions:
                stream(part, f.write)

        _write_atomically(output, fill)
        return tuple(totals)
    tmp_dir = _temporary_name(output)
    try:
        os.mkdir(tmp_dir)
        results = []
        for part in partitions:
            stats: list = []

            def fill(f, part=part, stats=stats):
                stats.extend(stream(part, f.write))

            _write_atomically(os.path.join(tmp_dir, part.part_name), fill)
            results.append({"lines": stats[0], "failed": stats[1], "items": stats[2]})
        _finish_parts(tmp_dir, output, partitions, results, tuple(totals))
    except BaseException:
        _remove(tmp_dir)
        raise
    return tuple(totals)
