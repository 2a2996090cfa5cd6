"""Ranking a chunk of JSON Lines lines: the engine-free core of a batch job.

:func:`rank_lines` ranks lines a chunk at a time. A chunk goes through ``Campaign.rank_many`` in
one call (flat arrays, no per-line result objects); a chunk that call refuses as a whole is ranked
again through ``Campaign.rank_batch``, a failing batch split until its failing lines are alone.
Either way each input line gets exactly one output line, in input order, with the semantics of
``Campaign.rank`` (see docs/personalize.md for the format).
"""
from __future__ import annotations

from itertools import chain
from typing import Iterable, Iterator, Sequence

import numpy as np

from .lines import (SCORE_DECIMALS, _ERRORS, _error_line, _error_message, _LineError, _ok_line,
                    _orjson, _parse, _validate)

#: Lines per kernel call. Chunks of a few hundred lines keep a chunk's Python objects small enough
#: to stay in cache while the kernel call is still large.
DEFAULT_CHUNK_SIZE = 512

_INVALID = object()  # marks a line that is not JSON


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
        Lines per ``Campaign.rank_many`` call.

    Returns
    -------
    list of bytes
        The output lines, without newlines, in input order (format: docs/personalize.md).
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


class _Good:
    """The lines of a chunk that passed validation, column by column (``where``: chunk index)."""

    __slots__ = ("where", "raw", "users", "lists", "contexts", "filter_values")

    def __init__(self):
        self.where: list = []
        self.raw: list = []
        self.users: list = []
        self.lists: list = []
        self.contexts: list = []
        self.filter_values: list = []

    def add(self, i: int, raw: bytes, user: str, items: list, context, filter_values) -> None:
        self.where.append(i)
        self.raw.append(raw)
        self.users.append(user)
        self.lists.append(items)
        self.contexts.append(context)
        self.filter_values.append(filter_values)


def _triage(raws: Sequence[bytes], filter_plan, orjson, out: list) -> tuple:
    """Parse a chunk: ``(good lines, failed)``; each failed line's output goes into ``out``.

    Item IDs are not type-checked here: ``rank_many`` refuses a non-string ID for the whole chunk,
    which is then ranked by :func:`_rank_chunk_careful`.
    """
    loads, dumps = orjson.loads, orjson.dumps
    good = _Good()
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
                good.add(i, raw, user, item_ids, None, {})
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
        good.add(i, raw, request["user_id"], request["item_ids"], request.get("context"),
                 request.get("filter_values"))
    return good, failed


def _rank_chunk(campaign, raws: Sequence[bytes], filter_plan=None) -> tuple:
    """Rank one chunk: ``(output lines without newline, failed, items)``.

    The lean path: one ``Campaign.rank_many`` call over the chunk (flat arrays, no per-line
    result objects), scores rounded and converted in one go, each output line built from slices.
    A chunk holding a non-string item ID, or one the lean path refuses as a whole, is ranked again
    by :func:`_rank_chunk_careful` (line by line validation, failing requests isolated).
    """
    orjson = _orjson()
    out: list = [None] * len(raws)
    good, failed = _triage(raws, filter_plan, orjson, out)
    if not good.where:
        return out, failed, 0
    lens = np.fromiter(map(len, good.lists), dtype=np.int64, count=len(good.where))
    bounds = np.zeros(len(good.where) + 1, dtype=np.int64)
    np.cumsum(lens, out=bounds[1:])
    flat = list(chain.from_iterable(good.lists))
    contexts = good.contexts
    try:
        ranked = campaign.rank_many(
            good.users, flat, bounds, contexts=contexts if any(contexts) else None,
            filter=filter_plan, filter_values=good.filter_values if filter_plan is not None else None)
    except _ERRORS:
        return _rank_chunk_careful(campaign, raws, filter_plan)
    items, more_failed = _fill_ranked(out, good, lens, flat, ranked, orjson)
    return out, failed + more_failed, items


def _fill_ranked(out: list, good: _Good, lens, flat: list, ranked: tuple, orjson) -> tuple:
    """Put the output line of each good line into ``out`` from ``rank_many``'s result:
    ``(items, failed)``."""
    order, scores, offsets, unknown, errors = ranked
    dumps, numpy_opt = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
    # the ranked IDs of the whole chunk in one object-array gather (no per-item Python ints)
    ranked_ids = np.fromiter(flat, dtype=object, count=len(flat))[order]
    # float64 slices serialise exactly like lists of Python floats, without creating them
    sc_all = np.round(scores.astype(np.float64), SCORE_DECIMALS)
    off = offsets.tolist()
    n_items = lens.tolist()
    items = failed = 0
    for k, i in enumerate(good.where):
        if errors and k in errors:
            out[i] = _error_line(dumps, good.raw[k], _error_message(errors[k]), True)
            failed += 1
            continue
        items += n_items[k]
        a, b = off[k], off[k + 1]
        ids = ranked_ids[a:b].tolist()
        scores_k = sc_all[a:b]
        unk = unknown.get(k) if unknown else None
        if unk:
            ids += unk
            scores_k = scores_k.tolist() + [None] * len(unk)
        out[i] = _ok_line(good.raw[k], dumps({"recommendedItems": ids, "scores": scores_k},
                                             option=numpy_opt))
    return items, failed


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
        for i, ln, res in zip(where, good, results):
            if isinstance(res, BaseException):
                out[i] = _error_line(dumps, ln.raw, _error_message(res), True)
                failed += 1
                continue
            items += ln.n_items
            scores = np.round(res.scores.astype(np.float64), SCORE_DECIMALS).tolist()
            if res.unknown_item_ids:
                scores.extend([None] * len(res.unknown_item_ids))
            out[i] = _ok_line(ln.raw, dumps({"recommendedItems": res.item_ids, "scores": scores}))
    return out, failed, items
