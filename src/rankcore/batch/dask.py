"""The Dask engine of a batch job: partitions ranked as tasks on a Dask cluster.

``scheduler="local"`` starts a ``LocalCluster`` (:func:`local_cluster`), ``"tcp://host:port"``
joins a running one, or a ``distributed.Client`` is used as it is. The client keeps a window of
partitions in flight (two per worker) and writes their output in input order, or the workers write
part files into a directory that every worker must see. Each task is
:func:`rankcore.batch.local.rank_partition`, which workers import by name.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections import deque
from typing import Callable

from ..errors import BatchError
from .local import _check_stop, _compile_filter, rank_partition
from .output import _finish_parts, _remove, _temporary_name
from .progress import _FailedLines


def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, processes: bool = True):
    """The ``LocalCluster`` of ``--scheduler local``: on 127.0.0.1 only, no dashboard.

    Its workers log only critical messages (the job reports its own errors; a shutdown after an
    interrupt would otherwise print every worker's lost heartbeat). The scheduler's small HTTP server (health checks) listens on a free port of 127.0.0.1 rather
    than on 8787, so clusters of several jobs on one machine never collide.
    """
    from distributed import LocalCluster  # lazy: optional third-party dependency (the dask extra)
    # Worker processes started while SIGINT is ignored inherit that: a Ctrl-C at the terminal
    # reaches the whole process group, and only this process should handle it (it closes the
    # cluster), not every worker with a traceback of its own.
    restore = None
    if processes and threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            processes=processes, protocol="tcp", host="127.0.0.1",
                            dashboard_address=None, silence_logs=logging.CRITICAL,
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    finally:
        if restore is not None:
            signal.signal(signal.SIGINT, restore)


def _connect(scheduler) -> tuple:
    """``(client, things to close)`` for ``scheduler`` ("local", an address, or a Client)."""
    try:
        from distributed import Client  # lazy: optional third-party dependency (the dask extra)
    except ImportError:
        raise BatchError("distributed mode needs dask: pip install 'rankcore[dask]'") from None
    if isinstance(scheduler, Client):
        return scheduler, []
    if scheduler == "local":
        cluster = local_cluster()
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
        return client, [client, cluster]
    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise BatchError(f"--scheduler must be 'local' or an address like tcp://host:8786, "
                         f"got {scheduler!r}")
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise BatchError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    return client, [client]


def _model_directory(model) -> str:
    """The absolute path of ``model``, which must be a model directory (workers load it)."""
    if not isinstance(model, (str, os.PathLike)):
        raise BatchError("distributed mode needs the model as a directory path")
    model = os.path.abspath(os.fspath(model))
    if not os.path.isfile(os.path.join(model, "manifest.json")):
        raise BatchError(f"{model!r} is not a model directory (no manifest.json)")
    return model


def _run_dask(model, partitions: list, output: str, filter_expression: str | None,
              chunk_size: int, parts: bool, report: Callable | None, scheduler,
              failed_lines: _FailedLines | None = None, ranker: Callable | None = None) -> tuple:
    """Rank ``partitions`` on the Dask cluster of ``scheduler`` into ``output``: ``(lines,
    failed, items)``; the first failed lines go to ``failed_lines``."""
    model = _model_directory(model)
    if filter_expression:  # syntax errors are fatal here, before any worker starts
        _compile_filter(filter_expression)
    client, own = _connect(scheduler)
    tmp = _temporary_name(output)
    pending: deque = deque()
    try:
        if parts:
            os.mkdir(tmp)
        todo = iter(partitions)
        job = uuid.uuid4().hex[:12]
        part_dir = os.path.abspath(tmp) if parts else None

        def submit() -> None:
            part = next(todo, None)
            if part is not None:
                fut = client.submit(rank_partition, model, part, filter_expression=filter_expression,
                                    chunk_size=chunk_size, part_dir=part_dir,
                                    ranker=ranker,
                                    key=f"rankcore-batch-{job}-{part.index:05d}", retries=2)
                pending.append((part, fut))

        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        for _ in range(max(2, 2 * n_workers)):
            submit()
        results = _gather(pending, submit, None if parts else tmp, report, failed_lines)
        totals = tuple(sum(r[k] for r in results) for k in ("lines", "failed", "items"))
        if parts:
            _finish_parts(tmp, output, partitions, results, totals)
        else:
            os.replace(tmp, output)
    except BaseException:
        for _, fut in pending:
            fut.cancel()
        _remove(tmp)
        raise
    finally:
        for thing in own:
            try:
                thing.close()
            except Exception:  # pragma: no cover - best effort on shutdown
                pass
    return totals


def _gather(pending: deque, submit: Callable, path: str | None, report: Callable | None,
            failed_lines: _FailedLines | None = None) -> list:
    """Wait for the partitions of ``pending`` in order, ``submit()`` one more after each; with
    ``path`` write their output there, in order. Returns their ``{"lines", "failed", "items"}``."""
    results: list = []
    f = None if path is None else open(path, "wb", buffering=1 << 20)
    try:
        while pending:
            _check_stop()
            part, fut = pending.popleft()
            res = fut.result()
            fut.release()
            if f is not None:
                f.write(res["data"])  # the client writes each partition once, in order
            if failed_lines is not None:
                failed_lines.add(part, res["lines"], res["failed_at"])
            res = {k: res[k] for k in ("lines", "failed", "items")}
            results.append(res)
            if report is not None:
                report(res["lines"], res["items"], part.end - part.start)
            submit()
    finally:
        if f is not None:
            f.close()
    return results
