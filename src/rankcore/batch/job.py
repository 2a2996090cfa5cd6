"""A whole batch job (:func:`run`, what ``rankcore batch`` does): its arguments checked, the input
split into partitions, the partitions ranked by the local or the Dask engine, a summary returned.
"""
from __future__ import annotations

import os
import sys
import time
from functools import partial

from ..errors import BatchError
from .chunks import DEFAULT_CHUNK_SIZE
from .dask import _run_dask
from .local import _run_local
from .partitions import DEFAULT_PARTITION_BYTES, _expand_inputs, plan_partitions
from .progress import BatchSummary, _FailedLines, _Progress
from .recommendations import DEFAULT_NUM_RESULTS, _recommend_chunk


def run(model, input, output, *, filter_expression: str | None = None, scheduler=None,
        chunk_size: int = DEFAULT_CHUNK_SIZE, partition_bytes: int = DEFAULT_PARTITION_BYTES,
        parts: bool = False, quiet: bool = False, progress=None, job: str = "ranking",
        num_results: int = DEFAULT_NUM_RESULTS) -> BatchSummary:
    """Run a batch inference job (what ``rankcore batch`` does).

    Parameters
    ----------
    model : str or os.PathLike (model directory), or a Model / Campaign (local mode only)
    input : path, glob, or a list of them
        JSON Lines files, ranked in order (globs sorted).
    output : path
        The output JSON Lines file, or with ``parts`` the output directory.
    filter_expression : str, optional
        A Personalize filter expression applied to every line with its ``filterValues``.
    scheduler : None, "local", a ``tcp://host:port`` address, or a ``distributed.Client``
        None ranks in this process; otherwise on Dask ("local" starts a 2-worker LocalCluster on
        127.0.0.1).
    chunk_size : int
        Lines per kernel call.
    partition_bytes : int
        Input bytes per partition (Dask task, part file).
    parts : bool
        Write part files and a manifest into the directory ``output``.
    quiet : bool
        No progress bar.
    progress : bool or callable, optional
        None shows a progress bar when stderr is a terminal (and not ``quiet``); a callable is
        called as ``progress(lines, items, nbytes)`` with increments.
    job : {"ranking", "recommendations"}
        Rank each line's ``itemList`` (GetPersonalizedRanking), or recommend catalog items for
        each line's ``userId`` / related items of its ``itemId`` (GetRecommendations).
    num_results : int
        Recommendations per line without its own ``numResults`` (1-500; recommendations job).

    Returns
    -------
    BatchSummary

    Raises
    ------
    BatchError
        Bad arguments (no input, output directory missing or already there, bad filter).
    """
    t0 = time.perf_counter()
    if chunk_size < 1:
        raise BatchError(f"chunk size must be >= 1, got {chunk_size}")
    ranker = _ranker(job, num_results)
    paths = _expand_inputs(input)
    output = os.fspath(output)
    _check_output(paths, output, parts)
    partitions = plan_partitions(paths, partition_bytes)
    bar = None
    report = None
    if callable(progress):
        report = progress
    elif progress or (progress is None and not quiet and sys.stderr.isatty()):
        try:
            bar = _Progress(sum(p.end - p.start for p in partitions))
            report = bar.update
        except ImportError:  # no tqdm (the batch extra): run without a progress bar
            bar = None
    failed_lines = _FailedLines()
    try:
        if scheduler is None:
            n, failed, items = _run_local(model, partitions, output, filter_expression,
                                          chunk_size, parts, report, failed_lines, ranker)
        else:
            n, failed, items = _run_dask(model, partitions, output, filter_expression, chunk_size,
                                         parts, report, scheduler, failed_lines, ranker)
    finally:
        if bar is not None:
            bar.close()
    return BatchSummary(n, failed, items, time.perf_counter() - t0, output, len(partitions),
                        tuple(failed_lines.found))


def _ranker(job: str, num_results: int):
    """The chunk function of ``job`` (None: the ranking job's default)."""
    if job == "ranking":
        return None
    if job != "recommendations":
        raise BatchError(f"job must be 'ranking' or 'recommendations', got {job!r}")
    if isinstance(num_results, bool) or not isinstance(num_results, int) or not 1 <= num_results <= 500:
        raise BatchError(f"num_results must be an integer from 1 to 500, got {num_results!r}")
    return partial(_recommend_chunk, num_results=num_results)


def _check_output(paths: list, output: str, parts: bool) -> None:
    """Refuse an ``output`` that is an input, lies in no directory, or would be overwritten in a
    way ``parts`` does not allow."""
    out_abs = os.path.abspath(output)
    if any(os.path.abspath(p) == out_abs for p in paths):
        raise BatchError(f"output {output!r} is also an input file")
    parent = os.path.dirname(out_abs)
    if not os.path.isdir(parent):
        raise BatchError(f"output directory {parent!r} does not exist")
    if parts and os.path.exists(output):
        raise BatchError(f"output {output!r} already exists; remove it or choose another name")
    if not parts and os.path.isdir(output):
        raise BatchError(f"output {output!r} is a directory (use --parts to write part files)")
