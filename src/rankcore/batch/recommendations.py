"""Batch recommendations: JSON Lines in Personalize's batch format for user and related items.

Input ``{"userId"}`` (user recommendations) or ``{"itemId", "userId"?}`` (related items), with
optional ``numResults`` (1-500, default the job's), ``filterValues`` and ``context`` (users
only); other members are ignored and echoed. Output ``{"input", "output": {"recommendedItems",
"scores"}, "error"}`` as for ranking jobs (``lines``). A chunk is answered by one
``personalize.recommend.recommend_many`` call (one ``topk_batch`` over its queries), cut into
slices whose per-line filter masks stay under ``MASK_BYTES``. ``_recommend_chunk`` has the
signature of ``chunks._rank_chunk`` plus ``num_results``, so the local and Dask engines run it
in its place (``run(job="recommendations")``). Format and decisions: docs/personalize.md.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ..personalize.recommend import recommend_many
from .chunks import DEFAULT_CHUNK_SIZE, _chunks
from .lines import SCORE_DECIMALS, _check_str_map, _error_line, _error_message, _json_type
from .lines import _LineError, _ok_line, _orjson

__all__ = ["recommend_lines", "DEFAULT_NUM_RESULTS", "MAX_NUM_RESULTS", "MASK_BYTES"]

DEFAULT_NUM_RESULTS = 25
MAX_NUM_RESULTS = 500
#: Bytes of per-line catalog masks (lines x items) built at once when the job has a filter.
MASK_BYTES = 1 << 26


def recommend_lines(campaign, lines: Iterable, *, filter=None, num_results: int = DEFAULT_NUM_RESULTS,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> list:
    """Recommendations for JSON Lines input lines: one output line (bytes) per input line.

    ``filter`` is a plan (``rankcore.filters.compile_filter``) applied to every line with its
    ``filterValues``; ``num_results`` is the count for lines without ``numResults``.
    """
    _check_num_results(num_results)
    out: list = []
    for chunk in _chunks(lines, chunk_size):
        out.extend(_recommend_chunk(campaign, chunk, filter, num_results=num_results)[0])
    return out


def _check_num_results(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NUM_RESULTS:
        raise ValueError(f"numResults must be an integer from 1 to {MAX_NUM_RESULTS}, got {n!r}")
    return n


def _parse_line(raw: bytes, loads, default_k: int) -> tuple:
    """``(user_id, item_id, k, context, filter_values)`` of one line; raises ``_LineError``."""
    try:
        obj = loads(raw)
    except ValueError as exc:
        text = raw.decode("utf-8", "replace")
        raise _LineError(text, "empty line" if not text.strip() else f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineError(raw, f"a line must be a JSON object, got {_json_type(obj)}", True)
    try:
        user, item = obj.get("userId"), obj.get("itemId")
        if user is None and item is None:
            raise TypeError("a line needs 'userId' (user recommendations) or 'itemId' (related items)")
        for key, value in (("userId", user), ("itemId", item)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"'{key}' must be a string, got {_json_type(value)}")
        k = obj.get("numResults")
        k = default_k if k is None else _check_num_results(k)
        context = _check_str_map(obj, "context")
        filter_values = _check_str_map(obj, "filterValues")
    except (TypeError, ValueError) as exc:
        raise _LineError(raw, str(exc), True) from None
    return user, item, k, context, filter_values


def _recommend_chunk(campaign, raws: Sequence[bytes], filter_plan=None, *,
                     num_results: int = DEFAULT_NUM_RESULTS) -> tuple:
    """Recommend for one chunk: ``(output lines without newline, failed, items returned)``."""
    orjson = _orjson()
    loads, dumps = orjson.loads, orjson.dumps
    out: list = [None] * len(raws)
    good: list = []
    failed = 0
    for i, raw in enumerate(raws):
        raw = raw.strip()
        try:
            good.append((i, raw, *_parse_line(raw, loads, num_results)))
        except _LineError as exc:
            out[i] = _error_line(dumps, exc.input, exc.message, exc.is_json)
            failed += 1
    items = 0
    n_items = max(1, campaign.model.n_items)
    step = len(good) if filter_plan is None else max(1, MASK_BYTES // n_items)
    ids = campaign.model.item_ids
    for a in range(0, len(good), max(1, step)):
        part = good[a:a + step]
        k = max(line[4] for line in part)
        rows, scores, counts, errors = recommend_many(
            campaign, [line[2] for line in part], [line[3] for line in part], k,
            contexts=[line[5] for line in part], filter=filter_plan,
            filter_values=[line[6] for line in part])
        rounded = np.round(scores, SCORE_DECIMALS)
        for j, (i, raw, _, _, line_k, _, _) in enumerate(part):
            if j in errors:
                out[i] = _error_line(dumps, raw, _error_message(errors[j]), True)
                failed += 1
                continue
            c = min(int(counts[j]), line_k)
            body = {"recommendedItems": [ids[r] for r in rows[j, :c].tolist()],
                    "scores": rounded[j, :c].tolist()}
            out[i] = _ok_line(raw, dumps(body))
            items += c
    return out, failed, items
