"""Batch inference over JSON Lines files, like a Personalize batch inference job.

Input, one JSON object per line (PERSONALIZE_API.md section 6)::

    {"userId": "891", "itemList": ["27", "886", "101"], "filterValues": {...}?, "context": {...}?}

Output, one line per input line, in input order::

    {"input": {...}, "output": {"recommendedItems": ["27", "101", "886"],
                                "scores": [0.4842101, 0.2813315, 0.2344584]}, "error": null}

Lines are ranked a chunk at a time by ``Campaign.rank_many`` (one native call per chunk of lines,
flat arrays, no per-line result objects; ``Campaign.rank_batch`` for chunks it refuses), so a batch
job has exactly the semantics of ``Campaign.rank``: unknown items last with a ``null`` score,
duplicates keep their first occurrence, an unknown user is served from the cold-start vector,
``context`` and filters apply. Scores are rounded to 7 decimals, as the service's responses are.

``"input"`` is the input line as read (surrounding whitespace stripped), which is valid JSON.
A line that cannot be served (invalid JSON, not an object, a missing or mistyped field, an unknown
context field, a filter placeholder without a value, ...) keeps its place with ``"output": null``
and ``"error": "<message>"``; ``"input"`` is then the line as read when it is JSON, or the line's
text as a JSON string when it is not. The job goes on: the output always has exactly as many lines as the input.
A line is the text between two ``\\n``; a blank line is a failed line, a final ``\\n`` adds none.
Members other than the four above are ignored (and echoed in ``"input"``).

Engines
-------
``rank_lines(campaign, lines)`` is the engine-free core. ``run(...)`` (and the ``rankcore batch``
command) splits the input files into byte-range partitions (a line belongs to the partition in
which it starts) and ranks each partition in chunks of ``chunk_size`` lines with
:func:`rank_partition`, either in this process (local mode, the kernel using every core) or on a
Dask cluster (``scheduler="local"`` starts a ``LocalCluster``, ``"tcp://host:port"`` joins one).
Workers load the model once each, memory-mapped, and cache it per model path. Memory stays
bounded whatever the input size: local mode holds a few chunks (two are ranked at once, so one
chunk's kernel runs while another is parsed or serialised), distributed mode a window of
partitions in flight.

Output safety
-------------
Output goes to ``OUTPUT.tmp-<uuid>`` next to ``OUTPUT`` and is renamed to ``OUTPUT`` only when
every line has been written; on an error or an interrupt the temporary file is removed, so a file
named ``OUTPUT`` is always complete. With ``parts=True`` ``OUTPUT`` is a directory of
``part-NNNNN.jsonl`` files (one per partition, each written to a temporary name and renamed, so a
retried task never leaves two copies) and ``_manifest.json``, written last, listing the parts with
their line counts and ``"complete": true``; the directory is built under a temporary name and
renamed at the end. Part files need a filesystem that every worker sees.
"""
from __future__ import annotations

import argparse
import gc
import glob as _glob
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import BatchError
from ..filters import compile_filter
from ..model import load_model
from ..personalize import Campaign

__all__ = ["rank_lines", "rank_partition", "run", "local_cluster", "BatchSummary", "Partition", "plan_partitions",
           "configure_parser", "main", "DEFAULT_CHUNK_SIZE", "DEFAULT_PARTITION_BYTES",
           "MANIFEST_NAME"]

#: Lines per kernel call. Chunks of a few hundred lines keep a chunk's Python objects small enough
#: to stay in cache (measured faster than 4096 at 500 items per line) while the kernel call is
#: still large.
DEFAULT_CHUNK_SIZE = 512
#: Chunks ranked at once (threads): one chunk's kernel overlaps another's parsing/serialising.
_PIPELINE_DEPTH = 2
#: Input bytes per partition (the unit of distribution, retry and part files).
DEFAULT_PARTITION_BYTES = 64 << 20
MANIFEST_NAME = "_manifest.json"
#: Scores are rounded to this many decimals, as the service's responses are.
SCORE_DECIMALS = 7

_ERRORS = (ValueError, TypeError, LookupError)  # a line's fault; anything else is fatal
_STR_ONLY = frozenset((str,))
_INVALID = object()  # marks a line that is not JSON


def _orjson():
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson ships with the server/dask extras
        raise ImportError("rankcore batch needs orjson: pip install 'rankcore[batch]'") from None
    return orjson


# --------------------------------------------------------------------------- the core
class _Line:
    """One parsed, validated input line."""

    __slots__ = ("raw", "obj", "request", "n_items")

    def __init__(self, raw: bytes, obj: dict, request: dict, n_items: int):
        self.raw = raw
        self.obj = obj
        self.request = request
        self.n_items = n_items


def _check_str_map(obj: dict, key: str) -> dict | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"'{key}' must be an object of string values")
    for k, v in value.items():
        if not isinstance(v, str):
            raise TypeError(f"'{key}' value for {k!r} must be a string")
    return value


def _parse(raw: bytes, loads, filter_plan, check_items: bool = True) -> _Line:
    """Parse and validate one line (``raw`` without its newline); raises ``_LineError``.

    ``check_items=False`` skips the per-item type check: the caller's ID lookup over the whole
    chunk refuses non-string items instead (and the chunk is then re-ranked with the check).
    """
    try:
        obj = loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        text = raw.decode("utf-8", "replace")
        msg = "empty line" if not text.strip() else f"invalid JSON: {exc}"
        raise _LineError(text, msg) from None
    return _validate(raw, obj, filter_plan, check_items)


def _validate(raw: bytes, obj, filter_plan, check_items: bool = True) -> _Line:
    """Validate one parsed line (see :func:`_parse`); raises ``_LineError``."""
    if not isinstance(obj, dict):
        raise _LineError(raw, f"a line must be a JSON object, got {_json_type(obj)}", True)
    try:
        user = obj.get("userId")
        if user is None:
            raise TypeError("missing required field 'userId'")
        if not isinstance(user, str):
            raise TypeError(f"'userId' must be a string, got {_json_type(user)}")
        items = obj.get("itemList")
        if items is None:
            raise TypeError("missing required field 'itemList'")
        if not isinstance(items, list):
            raise TypeError(f"'itemList' must be a list of strings, got {_json_type(items)}")
        if check_items and items and not _STR_ONLY.issuperset(map(type, items)):  # C speed
            i = next(i for i, item in enumerate(items) if type(item) is not str)
            raise TypeError(f"'itemList' must hold strings, got {_json_type(items[i])} at {i}")
        context = _check_str_map(obj, "context")
        filter_values = _check_str_map(obj, "filterValues")
    except TypeError as exc:
        raise _LineError(raw, str(exc), True) from None
    request = {"user_id": user, "item_ids": items}
    if context:
        request["context"] = context
    if filter_plan is not None:
        request["filter"] = filter_plan
        request["filter_values"] = filter_values or {}
    return _Line(raw, obj, request, len(items))


class _LineError(Exception):
    """A line that cannot be served; ``input`` is the raw JSON (``is_json``) or the text."""

    def __init__(self, input, message: str, is_json: bool = False):
        super().__init__(message)
        self.input = input
        self.message = message
        self.is_json = is_json


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _rank_isolating(campaign, lines: list) -> list:
    """``campaign.rank_batch`` over ``lines``; a batch that raises is split in halves until the
    failing lines are alone. Returns, per line, a ``RankingResult`` or the exception."""
    try:
        return campaign.rank_batch([ln.request for ln in lines])
    except _ERRORS as exc:
        if len(lines) == 1:
            return [exc]
    if len(lines) <= 8:
        return [r for ln in lines for r in _rank_isolating(campaign, [ln])]
    mid = len(lines) // 2
    return _rank_isolating(campaign, lines[:mid]) + _rank_isolating(campaign, lines[mid:])


def _error_line(dumps, input, message: str, is_json: bool = False) -> bytes:
    if is_json:  # echo valid JSON input as it was read, like the lines that succeed
        return b'{"input":' + input + b',"output":null,"error":' + dumps(message) + b"}"
    return dumps({"input": input, "output": None, "error": message})


def _error_message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) is the quoted key only
        msg = f"unknown key {exc.args[0]!r}"
    return msg


def _rank_chunk(campaign, raws: Sequence[bytes], filter_plan=None) -> tuple:
    """Rank one chunk: ``(output lines without newline, failed, items)``.

    The lean path: one ``Campaign.rank_many`` call over the chunk (flat arrays, no per-line
    result objects), scores rounded and converted in one go, each output line built from slices.
    A chunk holding a non-string item ID, or one the lean path refuses as a whole, is ranked again
    by :func:`_rank_chunk_careful` (line by line validation, failing requests isolated).
    """
    rank_many = campaign.rank_many
    orjson = _orjson()
    loads, dumps = orjson.loads, orjson.dumps
    numpy_opt = orjson.OPT_SERIALIZE_NUMPY
    out: list = [None] * len(raws)
    where: list = []  # per good line: its index in the chunk, raw, user, items, context, values
    good_raw: list = []
    users: list = []
    lists: list = []
    contexts: list = []
    fvs: list = []
    failed = 0
    for i, raw in enumerate(raws):
        raw = raw.strip()
        try:
            obj = loads(raw)
        except ValueError:  # invalid JSON: the full check below words the error
            obj = _INVALID
        if type(obj) is dict:
            user = obj.get("userId")
            item_ids = obj.get("itemList")
            if (type(user) is str and type(item_ids) is list and obj.get("context") is None
                    and obj.get("filterValues") is None):  # the common line, checked inline
                where.append(i)
                good_raw.append(raw)
                users.append(user)
                lists.append(item_ids)
                contexts.append(None)
                fvs.append({})
                continue
        try:
            if obj is _INVALID:
                raise _LineError(raw, "invalid JSON")
            request = _validate(raw, obj, filter_plan, False).request
        except _LineError:
            try:  # the full check, so the message is the one of the first fault
                _parse(raw, loads, filter_plan)
            except _LineError as exc:
                out[i] = _error_line(dumps, exc.input, exc.message, exc.is_json)
                failed += 1
                continue
            raise AssertionError("a line failed the lean check only")  # pragma: no cover
        where.append(i)
        good_raw.append(raw)
        users.append(request["user_id"])
        lists.append(request["item_ids"])
        contexts.append(request.get("context"))
        fvs.append(request.get("filter_values"))
    items = 0
    if not where:
        return out, failed, items
    n_good = len(where)
    lens = np.fromiter(map(len, lists), dtype=np.int64, count=n_good)
    bounds = np.zeros(n_good + 1, dtype=np.int64)
    np.cumsum(lens, out=bounds[1:])
    flat = list(chain.from_iterable(lists))
    try:
        order, scores, offsets, unknown, errors = rank_many(
            users, flat, bounds, contexts=contexts if any(contexts) else None, filter=filter_plan,
            filter_values=fvs if filter_plan is not None else None)
    except _ERRORS:
        return _rank_chunk_careful(campaign, raws, filter_plan)
    # the ranked IDs of the whole chunk in one object-array gather (no per-item Python ints)
    ranked = np.fromiter(flat, dtype=object, count=len(flat))[order]
    del flat, order
    # float64 slices serialise exactly like lists of Python floats, without creating them
    sc_all = np.round(scores.astype(np.float64), SCORE_DECIMALS)
    off = offsets.tolist()
    n_items = lens.tolist()
    join = b"".join
    for k, i in enumerate(where):
        if errors and k in errors:
            out[i] = _error_line(dumps, good_raw[k], _error_message(errors[k]), True)
            failed += 1
            continue
        items += n_items[k]
        a, b = off[k], off[k + 1]
        ids = ranked[a:b].tolist()
        scores_k = sc_all[a:b]
        unk = unknown.get(k) if unknown else None
        if unk:
            ids += unk
            scores_k = scores_k.tolist() + [None] * len(unk)
        # the input is echoed as it was read (it parsed, so it is valid JSON)
        out[i] = join((b'{"input":', good_raw[k], b',"output":',
                       dumps({"recommendedItems": ids, "scores": scores_k}, option=numpy_opt),
                       b',"error":null}'))
    return out, failed, items


def _rank_chunk_careful(campaign, raws: Sequence[bytes], filter_plan=None) -> tuple:
    """Rank one chunk through ``Campaign.rank_batch``, a failing batch split until its failing
    lines are alone: ``(output lines without newline, failed, items)``."""
    orjson = _orjson()
    loads, dumps = orjson.loads, orjson.dumps
    out: list = [None] * len(raws)
    good: list = []
    where: list = []
    failed = 0
    for i, raw in enumerate(raws):
        raw = raw.strip()
        try:
            good.append(_parse(raw, loads, filter_plan))
            where.append(i)
        except _LineError as exc:
            out[i] = _error_line(dumps, exc.input, exc.message, exc.is_json)
            failed += 1
    items = 0
    if good:
        results = _rank_isolating(campaign, good)
        nan = None
        for i, ln, res in zip(where, good, results):
            if isinstance(res, BaseException):
                out[i] = _error_line(dumps, ln.raw, _error_message(res), True)
                failed += 1
                continue
            items += ln.n_items
            scores = np.round(res.scores.astype(np.float64), SCORE_DECIMALS).tolist()
            unknown = res.unknown_item_ids
            if unknown:
                scores.extend([nan] * len(unknown))
            body = dumps({"recommendedItems": res.item_ids, "scores": scores})
            # the input is echoed as it was read (it parsed, so it is valid JSON)
            out[i] = b'{"input":' + ln.raw + b',"output":' + body + b',"error":null}'
    return out, failed, items


def rank_lines(campaign, lines: Iterable, *, filter=None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list:
    """Rank JSON Lines input lines with ``campaign``: one output line (bytes) per input line.

    Parameters
    ----------
    campaign : rankcore.Campaign
    lines : iterable of str or bytes
        Input lines (a trailing newline is ignored).
    filter : filter plan, optional
        Applied to every line, with the line's ``filterValues`` (e.g. from
        ``rankcore.filters.compile_filter``).
    chunk_size : int
        Lines per ``Campaign.rank_batch`` call.

    Returns
    -------
    list of bytes
        The output lines, without newlines, in input order (see the module docstring).
    """
    out: list = []
    for chunk in _chunks(lines, chunk_size):
        out.extend(_rank_chunk(campaign, chunk, filter)[0])
    return out


def _chunks(lines: Iterable, size: int) -> Iterator[list]:
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    chunk: list = []
    for line in lines:
        chunk.append(line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- partitions
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
    specs = [input] if isinstance(input, (str, os.PathLike)) else list(input)
    paths: list = []
    for spec in specs:
        spec = os.fspath(spec)
        if _glob.has_magic(spec):
            found = sorted(p for p in _glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise BatchError(f"no input file matches {spec!r}")
            paths.extend(found)
        elif os.path.isfile(spec):
            paths.append(spec)
        else:
            raise BatchError(f"input file {spec!r} does not exist")
    return paths


# --------------------------------------------------------------------------- per-process state
_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _compile_filter(campaign, expression: str):
    try:
        plan = compile_filter(expression)
        validate = getattr(plan, "validate", None)
        if validate is not None:
            validate(campaign.data)
    except ValueError as exc:
        raise BatchError(f"invalid filter expression: {exc}") from None
    return plan


def _serving(model, filter_expression: str | None) -> tuple:
    """``(campaign, filter plan)`` for ``model`` (a Campaign, a Model or a model directory).

    A directory is loaded memory-mapped once per process and cached with its compiled filter, so
    each Dask worker loads the model once whatever the number of partitions it ranks.
    """
    if isinstance(model, Campaign):
        campaign = model
    elif isinstance(model, (str, os.PathLike)):
        key = (os.path.abspath(os.fspath(model)), filter_expression)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is None:
                campaign = Campaign(load_model(key[0], mmap=True))
                plan = _compile_filter(campaign, filter_expression) if filter_expression else None
                hit = _CACHE[key] = (campaign, plan)
        return hit
    else:
        campaign = Campaign(model)
    plan = _compile_filter(campaign, filter_expression) if filter_expression else None
    return campaign, plan


# --------------------------------------------------------------------------- one partition
#: Set by ``main``'s SIGTERM handler. The handler also raises KeyboardInterrupt, but an exception
#: raised inside a finalizer or weakref callback is swallowed by Python, so the loops check this
#: flag between chunks and partitions as well.
_STOP = threading.Event()


def _check_stop() -> None:
    if _STOP.is_set():
        raise KeyboardInterrupt


_GC_LOCK = threading.Lock()
_GC_STATE: list = [0, None]  # streams running, thresholds to restore
#: First-generation threshold while streams run. A chunk allocates big containers (a list per
#: line of item IDs, a tuple per line of ranked IDs, ...) that die with the chunk without cycles;
#: at the default 700 the collector keeps traversing them (about 5% of a job). Collections still
#: happen, so memory stays bounded.
_GC_THRESHOLD0 = 100_000


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
                 on_chunk: Callable | None = None, counter: list | None = None) -> tuple:
    with _gc_relaxed():
        return _rank_stream_(campaign, plan, lines, chunk_size, write, on_chunk, counter)


def _rank_stream_(campaign, plan, lines: Iterable[bytes], chunk_size: int, write: Callable,
                  on_chunk: Callable | None = None, counter: list | None = None) -> tuple:
    """Rank ``lines`` chunk by chunk, ``write(bytes)`` each chunk's output in order; ``(lines,
    failed, items)``. ``on_chunk(lines, items, nbytes)`` follows each chunk written, ``nbytes``
    being what ``counter[0]`` (bytes read, reset here) counted for the chunk.

    With ``_PIPELINE_DEPTH`` > 1, that many chunks are ranked at once on a small thread pool: the
    kernel releases the GIL, so one chunk's kernel runs while another is parsed or serialised.
    """
    totals = [0, 0, 0]

    def finish(n_lines: int, nbytes: int, result: tuple) -> None:
        out, f, i = result
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

    depth = _PIPELINE_DEPTH
    if depth <= 1:
        for chunk in _chunks(lines, chunk_size):
            _check_stop()
            finish(len(chunk), read_bytes(), _rank_chunk(campaign, chunk, plan))
        return tuple(totals)
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    pool = ThreadPoolExecutor(depth, thread_name_prefix="rankcore-batch")
    try:
        for chunk in _chunks(lines, chunk_size):
            _check_stop()
            pending.append((len(chunk), read_bytes(), pool.submit(_rank_chunk, campaign, chunk, plan)))
            del chunk
            if len(pending) >= depth:
                n_lines, nbytes, fut = pending.popleft()
                finish(n_lines, nbytes, fut.result())
        while pending:
            _check_stop()
            n_lines, nbytes, fut = pending.popleft()
            finish(n_lines, nbytes, fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # at most the chunks in flight
    return tuple(totals)


def _write_atomically(path: str, fill: Callable) -> None:
    """Call ``fill(file)`` on ``path.tmp-<uuid>`` and rename it to ``path``; remove it on failure."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def rank_partition(model, partition: Partition, *, filter_expression: str | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE, part_dir: str | None = None) -> dict:
    """Rank one partition (the task both engines run).

    With ``part_dir`` the output goes to ``part_dir/part-NNNNN.jsonl`` (temporary name, then
    renamed: a retried task replaces, never duplicates); otherwise it is returned as ``"data"``.
    Returns ``{"index", "lines", "failed", "items", "data"}``.
    """
    campaign, plan = _serving(model, filter_expression)
    lines = _partition_lines(partition)
    if part_dir is None:
        buf: list = []
        n, failed, items = _rank_stream(campaign, plan, lines, chunk_size, buf.append)
        data = b"".join(buf)
    else:
        stats: list = []

        def fill(f):
            stats.extend(_rank_stream(campaign, plan, lines, chunk_size, f.write))

        _write_atomically(os.path.join(part_dir, partition.part_name), fill)
        n, failed, items = stats
        data = None
    return {"index": partition.index, "lines": n, "failed": failed, "items": items, "data": data}


# --------------------------------------------------------------------------- progress
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


# --------------------------------------------------------------------------- run
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


def run(model, input, output, *, filter_expression: str | None = None, scheduler=None,
        chunk_size: int = DEFAULT_CHUNK_SIZE, partition_bytes: int = DEFAULT_PARTITION_BYTES,
        parts: bool = False, quiet: bool = False, progress=None) -> BatchSummary:
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
        No progress display.
    progress : bool or callable, optional
        None shows a progress bar when stderr is a terminal (and not ``quiet``); a callable is
        called as ``progress(lines, items, nbytes)`` with increments.

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
    paths = _expand_inputs(input)
    output = os.fspath(output)
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
    partitions = plan_partitions(paths, partition_bytes)
    total_bytes = sum(p.end - p.start for p in partitions)

    bar = None
    report = None
    if callable(progress):
        report = progress
    elif progress or (progress is None and not quiet and sys.stderr.isatty()):
        bar = _Progress(total_bytes)
        report = bar.update
    try:
        if scheduler is None:
            n, failed, items = _run_local(model, partitions, output, filter_expression,
                                          chunk_size, parts, report)
        else:
            n, failed, items = _run_dask(model, partitions, output, filter_expression, chunk_size,
                                         parts, report, scheduler)
    finally:
        if bar is not None:
            bar.close()
    return BatchSummary(n, failed, items, time.perf_counter() - t0, output, len(partitions))


def _manifest(partitions: list, results: list, totals: tuple) -> bytes:
    parts = [{"file": p.part_name, "lines": r["lines"], "failed": r["failed"], "items": r["items"],
              "input": p.path, "start": p.start, "end": p.end} for p, r in zip(partitions, results)]
    doc = {"format": "rankcore-batch-output", "version": 1, "complete": True,
           "lines": totals[0], "failed": totals[1], "items": totals[2], "parts": parts}
    return _orjson().dumps(doc, option=_orjson().OPT_INDENT_2) + b"\n"


def _finish_parts(tmp_dir: str, output: str, partitions: list, results: list, totals: tuple) -> None:
    def fill(f):
        f.write(_manifest(partitions, results, totals))

    _write_atomically(os.path.join(tmp_dir, MANIFEST_NAME), fill)
    if os.path.exists(output):
        raise BatchError(f"output {output!r} appeared while the job ran; nothing was written")
    os.rename(tmp_dir, output)


def _run_local(model, partitions, output, filter_expression, chunk_size, parts, report) -> tuple:
    campaign, plan = _serving(model, filter_expression)
    totals = [0, 0, 0]

    def on_chunk(lines, items, nbytes):
        if report is not None:
            report(lines, items, nbytes)

    def stream(part, write):
        res = _rank_stream(campaign, plan, _partition_lines(part, counter), chunk_size, write,
                           on_chunk, counter)
        for k in range(3):
            totals[k] += res[k]
        return res

    counter = [0]
    if not parts:
        def fill(f):
            for part in partitions:
                stream(part, f.write)

        _write_atomically(output, fill)
        return tuple(totals)
    tmp_dir = f"{output}.tmp-{uuid.uuid4().hex}"
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


# --------------------------------------------------------------------------- Dask
def local_cluster(n_workers: int = 2, threads_per_worker: int = 1, processes: bool = True):
    """The ``LocalCluster`` of ``--scheduler local``: on 127.0.0.1 only, no dashboard.

    The scheduler's small HTTP server (health checks) listens on a free port of 127.0.0.1 rather
    than on 8787, so clusters of several jobs on one machine never collide.
    """
    from distributed import LocalCluster
    return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                        processes=processes, protocol="tcp", host="127.0.0.1",
                        dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def _connect(scheduler) -> tuple:
    """``(client, things to close)`` for ``scheduler`` ("local", an address, or a Client)."""
    try:
        from distributed import Client
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


def _run_dask(model, partitions, output, filter_expression, chunk_size, parts, report,
              scheduler) -> tuple:
    if not isinstance(model, (str, os.PathLike)):
        raise BatchError("distributed mode needs the model as a directory path")
    model = os.path.abspath(os.fspath(model))
    if not os.path.isfile(os.path.join(model, "manifest.json")):
        raise BatchError(f"{model!r} is not a model directory (no manifest.json)")
    if filter_expression:  # syntax errors are fatal here, before any worker starts
        try:
            compile_filter(filter_expression)
        except ValueError as exc:
            raise BatchError(f"invalid filter expression: {exc}") from None
    from collections import deque

    client, own = _connect(scheduler)
    job = uuid.uuid4().hex[:12]
    tmp = f"{output}.tmp-{uuid.uuid4().hex}"
    pending: deque = deque()
    totals = [0, 0, 0]
    results: list = []
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = max(2, 2 * n_workers)
        part_dir = None
        if parts:
            os.mkdir(tmp)
            part_dir = os.path.abspath(tmp)
        todo = iter(partitions)

        def submit() -> None:
            part = next(todo, None)
            if part is not None:
                fut = client.submit(rank_partition, model, part, filter_expression=filter_expression,
                                    chunk_size=chunk_size, part_dir=part_dir,
                                    key=f"rankcore-batch-{job}-{part.index:05d}", retries=2)
                pending.append((part, fut))

        for _ in range(window):
            submit()
        f = None if parts else open(tmp, "wb", buffering=1 << 20)
        try:
            while pending:
                _check_stop()
                part, fut = pending.popleft()
                res = fut.result()
                fut.release()
                if f is not None:
                    f.write(res["data"])  # the client writes each partition once, in order
                res = {k: res[k] for k in ("lines", "failed", "items")}
                results.append(res)
                totals[0] += res["lines"]
                totals[1] += res["failed"]
                totals[2] += res["items"]
                if report is not None:
                    report(res["lines"], res["items"], part.end - part.start)
                submit()
        finally:
            if f is not None:
                f.close()
        if parts:
            _finish_parts(tmp, output, partitions, results, tuple(totals))
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
    return tuple(totals)


# --------------------------------------------------------------------------- command line
def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``rankcore batch`` arguments to ``parser``."""
    parser.description = ("Rank JSON Lines of {userId, itemList, filterValues?, context?} "
                          "like a Personalize batch inference job.")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--input", required=True, action="append",
                        help="input JSON Lines file or glob (repeatable; files ranked in order)")
    parser.add_argument("--output", required=True,
                        help="output JSON Lines file (a directory with --parts)")
    parser.add_argument("--filter-expression", default=None,
                        help="Personalize filter expression applied to every line")
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler: 'local' (start a LocalCluster) or tcp://host:port; "
                             "default: rank in this process")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help=f"lines per kernel call (default {DEFAULT_CHUNK_SIZE})")
    parser.add_argument("--partition-size", type=_size, default=DEFAULT_PARTITION_BYTES,
                        help="input bytes per partition, e.g. 64M (default 64M)")
    parser.add_argument("--parts", action="store_true",
                        help="write part files and a _manifest.json into the OUTPUT directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    mult = units.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if t[-1:] in units else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def main(args: argparse.Namespace) -> int:
    """Run ``rankcore batch``: 0 when every line succeeded, 1 when some failed, 2 on a fatal
    error (one-line message on stderr), 130 when interrupted."""
    prog = "rankcore batch"
    restore = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            _STOP.set()
            raise KeyboardInterrupt

        _STOP.clear()
        restore = signal.signal(signal.SIGTERM, on_term)  # clean up temp files on SIGTERM too
    try:
        summary = run(args.model, args.input, args.output, filter_expression=args.filter_expression,
                      scheduler=args.scheduler, chunk_size=args.chunk_size,
                      partition_bytes=getattr(args, "partition_size", DEFAULT_PARTITION_BYTES),
                      parts=args.parts, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output written", file=sys.stderr)
        return 130
    except (BatchError, OSError, ValueError, ImportError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. a Dask task that kept failing: still one line, no traceback
        print(f"{prog}: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)
    if summary.failed or not args.quiet:
        print(f"{prog}: {summary}", file=sys.stderr)
    return 1 if summary.failed else 0

