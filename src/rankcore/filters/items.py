"""Items conditions bound to metadata columns: boolean masks over the candidate rows.

Constant conditions of an Items expression are folded, per set of columns, into one padded
boolean row mask (row -1 reads a False pad), so evaluating them is a single gather. Conditions
with placeholders are evaluated over the candidates the first time a set of filter values is
seen (cached per-column code tables for categorical, a CSR segment scan for multi-valued, which
also builds that condition's whole-column mask for the next time, direct comparisons for
numeric); when the same values come back, the whole expression is folded into a
padded whole-column mask for them (``BoundItems.MAX_CACHED_MASKS`` kept per expression, oldest
dropped first), so a repeated request is one gather.
"""
from __future__ import annotations

import threading
import weakref
from typing import Mapping

import numpy as np

from ..errors import FILTER_ERROR_PREFIX
from .syntax import Condition, Expression, parse_number, quote
from .values import placeholder_number, placeholder_numbers, placeholder_strings

__all__ = ["BoundItems", "column_kind", "kind_error", "numbers_for"]

_PREFIX = FILTER_ERROR_PREFIX

_CMP_FUNCS = {
    "=": np.equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}

# Per-column padded arrays (row -1 indexes the pad), shared by every plan.
_PADDED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _padded(col) -> dict:
    try:
        d = _PADDED.get(col)
    except TypeError:
        d = None
    if d is not None:
        return d
    n = len(col)
    d = {}
    if col.kind == "categorical":
        pc = np.empty(n + 1, dtype=np.int32)
        pc[:n] = col.codes
        pc[n] = -2  # unknown item: table[-2]
        d["codes"] = pc
    elif col.kind == "multi_categorical":
        off = col.offsets
        starts = np.zeros(n + 1, dtype=np.int64)
        ends = np.zeros(n + 1, dtype=np.int64)
        starts[:n] = off[:-1]
        ends[:n] = off[1:]
        d["starts"] = starts
        d["ends"] = ends
    else:
        pv = np.empty(n + 1, dtype=np.float64)
        pv[:n] = col.values
        pv[n] = np.nan
        d["values"] = pv
    try:
        _PADDED[col] = d
    except TypeError:
        pass
    return d


def column_kind(col) -> str:
    """``col.kind``, checked to be one the filters can read."""
    kind = getattr(col, "kind", None)
    if kind not in ("categorical", "multi_categorical", "numeric"):
        raise ValueError(f"{_PREFIX}unsupported column {col!r}")
    return kind


def numbers_for(cond: Condition, strings) -> list:
    """The listed ``strings`` of a condition on a numeric field, read as numbers."""
    out = []
    for s in strings:
        x = parse_number(s)
        if x is None:
            raise ValueError(f"{_PREFIX}{cond.label} is numeric; {quote(s)} is not a number")
        out.append(x)
    return out


def _multi_row_mask(col, code_table: np.ndarray) -> np.ndarray:
    """Whole-column mask: does each row hold a code marked in ``code_table``?"""
    hits = code_table[col.codes]
    c = np.zeros(hits.shape[0] + 1, dtype=np.int64)
    np.cumsum(hits, out=c[1:])
    return c[col.offsets[1:]] > c[col.offsets[:-1]]


def _multi_candidates(pad: dict, col, rows: np.ndarray, code_table: np.ndarray) -> np.ndarray:
    """Per-candidate any-match for a multi-valued column (rows may be -1)."""
    starts = pad["starts"][rows]
    lengths = pad["ends"][rows] - starts
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.shape[0] else 0
    if total == 0:
        return np.zeros(rows.shape[0], dtype=bool)
    idx = np.arange(total, dtype=np.int64)
    idx += np.repeat(starts - (ends - lengths), lengths)
    hits = code_table[col.codes[idx]]
    c = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(hits, out=c[1:])
    return c[ends] > c[ends - lengths]


class _ItemCondition:
    """A condition with placeholders, evaluated over the candidates."""

    __slots__ = ("cond", "col", "kind", "pad", "const_strings", "const_numbers", "params", "cache")

    def __init__(self, cond: Condition, col):
        self.cond = cond
        self.col = col
        self.kind = column_kind(col)
        self.pad = _padded(col)
        self.params = tuple(v.text for v in cond.values if v.kind == "placeholder")
        self.const_strings = tuple(v.text for v in cond.values if v.kind == "string")
        self.const_numbers = None
        if self.kind == "numeric" and cond.op == "IN":
            self.const_numbers = numbers_for(cond, self.const_strings)
        self.cache: dict = {}

    def _table(self, strings) -> np.ndarray:
        key = strings
        table = self.cache.get(key)
        if table is None:
            table = np.zeros(len(self.col.categories) + 2, dtype=bool)
            codes = self.col.codes_for(strings)
            if codes.size:
                table[codes] = True
            if len(self.cache) > 64:
                self.cache.clear()
            self.cache[key] = table
        return table

    def _numbers(self, fv: Mapping) -> list:
        """The listed numbers: constants, then each placeholder's values."""
        nums = list(self.const_numbers)
        for p in self.params:
            nums.extend(placeholder_numbers(fv, p))
        return nums

    def _strings(self, fv: Mapping) -> tuple:
        """The listed strings: constants, then each placeholder's values."""
        strings = self.const_strings
        for p in self.params:
            strings = strings + placeholder_strings(fv, p)
        return strings

    def mask(self, rows: np.ndarray, fv: Mapping) -> np.ndarray:
        """Per candidate row (may be -1): does it satisfy the condition for these filter values?"""
        cond = self.cond
        if cond.op != "IN":  # comparison with a placeholder operand
            x = placeholder_number(fv, self.params[0])
            return _CMP_FUNCS[cond.op](self.pad["values"][rows], x)
        if self.kind == "numeric":
            return _equals_any(self.pad["values"][rows], self._numbers(fv))
        strings = self._strings(fv)
        if self.kind == "categorical":
            return self._table(strings)[self.pad["codes"][rows]]
        # multi-valued: the first use of a value list answers the candidates with a segment scan
        # and also builds the list's padded whole-column mask, kept in self.cache beside the code
        # tables (all dropped past 64 entries), so a later use (here or in row_mask) is one gather
        masks = self.cache
        key = ("rows", strings)
        m = masks.get(key)
        if m is not None:
            return m[rows]
        table = self._table(strings)[:-2]
        out = _multi_candidates(self.pad, self.col, rows, table)
        m = np.zeros(len(self.col) + 1, dtype=bool)
        m[:-1] = _multi_row_mask(self.col, table)
        masks[key] = m
        return out

    def row_mask(self, fv: Mapping) -> np.ndarray:
        """Padded whole-column mask (length n + 1, pad False) for these filter values."""
        cond = self.cond
        if cond.op != "IN":
            x = placeholder_number(fv, self.params[0])
            with np.errstate(invalid="ignore"):
                return _CMP_FUNCS[cond.op](self.pad["values"], x)
        if self.kind == "numeric":
            return _equals_any(self.pad["values"], self._numbers(fv))
        strings = self._strings(fv)
        if self.kind == "categorical":
            return self._table(strings)[self.pad["codes"]]
        key = ("rows", strings)
        m = self.cache.get(key)
        if m is None:
            m = np.zeros(len(self.col) + 1, dtype=bool)
            m[:-1] = _multi_row_mask(self.col, self._table(strings)[:-2])
        return m


def _equals_any(vals: np.ndarray, nums: list) -> np.ndarray:
    """``vals == nums[0] | vals == nums[1] | ...`` (NaN equals nothing)."""
    m = vals == nums[0]
    for x in nums[1:]:
        m |= vals == x
    return m


def _constant_row_mask(cond: Condition, col) -> np.ndarray:
    """Padded whole-column mask (length n + 1, pad False) of a condition without placeholders."""
    kind = column_kind(col)
    n = len(col)
    out = np.zeros(n + 1, dtype=bool)
    negate = cond.op == "NOT IN"
    if cond.op in ("IN", "NOT IN"):
        strings = [v.text for v in cond.values]
        if kind == "numeric":
            nums = numbers_for(cond, strings)
            inside = np.isin(col.values, np.asarray(nums, dtype=np.float64))
        else:
            table = np.zeros(len(col.categories) + 1, dtype=bool)  # last entry: missing (-1)
            codes = col.codes_for(strings)
            if codes.size:
                table[codes] = True
            if kind == "categorical":
                inside = table[col.codes]
            else:
                inside = _multi_row_mask(col, table[:-1])
        out[:n] = ~inside if negate else inside
    else:
        if kind != "numeric":
            raise kind_error(cond, kind)
        with np.errstate(invalid="ignore"):
            out[:n] = _CMP_FUNCS[cond.op](col.values, cond.values[0].number)
    return out


def kind_error(cond: Condition, kind: str) -> ValueError:
    """The error for a comparison on a field that is not numeric."""
    return ValueError(f"{_PREFIX}comparison '{cond.op}' needs a numeric field, but {cond.label} "
                      f"is {kind.replace('_', '-')}")


class BoundItems:
    """An Items expression bound to columns: a folded constant mask plus placeholder groups."""

    __slots__ = ("expr", "include", "params", "user_conds", "const_mask", "groups", "_masks",
                 "_seen", "_lock")

    #: Whole-column masks kept per expression (one per distinct set of filter values; each is
    #: n_items + 1 bytes), built when a set of values comes back a second time.
    MAX_CACHED_MASKS = 4

    def __init__(self, expr: Expression, columns: Mapping, user_conds: tuple):
        self.expr = expr
        self.include = expr.include
        self.params = tuple(sorted(expr.placeholders))
        self.user_conds = user_conds
        self._masks: dict = {}  # filter values of self.params -> padded whole-column mask
        self._seen: dict = {}  # filter values met once (answered without a whole-expression mask)
        self._lock = threading.Lock()
        const_mask = None
        groups = []
        for group in expr.groups:
            g_const = None
            g_dynamic = []
            for cond in group:
                col = columns[cond.field]
                kind = column_kind(col)
                if cond.op not in ("IN", "NOT IN") and kind != "numeric":
                    raise kind_error(cond, kind)
                if cond.placeholders:
                    g_dynamic.append(_ItemCondition(cond, col))
                else:
                    m = _constant_row_mask(cond, col)
                    g_const = m if g_const is None else (g_const & m)
            if not g_dynamic:
                const_mask = g_const if const_mask is None else (const_mask | g_const)
            else:
                groups.append((g_const, tuple(g_dynamic)))
        self.const_mask = const_mask
        self.groups = tuple(groups)

    def mask(self, rows: np.ndarray, ctx) -> np.ndarray:
        """Per candidate: does it satisfy the expression (for ``ctx.filter_values``)?"""
        if not self.groups:
            return self.const_mask[rows]
        fv = ctx.filter_values
        try:
            key = tuple([fv[p] for p in self.params])
            m = self._masks.get(key)
        except (KeyError, TypeError):  # a missing or unhashable value: no caching
            key = m = None
        if m is not None:
            return m[rows]
        if key is not None and all(type(v) is str for v in key):
            if key in self._seen:
                m = self._row_mask(fv)
                with self._lock:
                    masks = self._masks
                    while len(masks) >= self.MAX_CACHED_MASKS:
                        del masks[next(iter(masks))]
                    masks[key] = m
                    self._seen.pop(key, None)
                return m[rows]
            out = self._candidates_mask(rows, fv)
            with self._lock:
                if len(self._seen) >= 256:
                    self._seen.clear()
                self._seen[key] = None
            return out
        return self._candidates_mask(rows, fv)

    def _row_mask(self, fv: Mapping) -> np.ndarray:
        """The whole expression as a padded whole-column mask (row -1 reads the False pad)."""
        m = None if self.const_mask is None else self.const_mask.copy()
        for g_const, dynamic in self.groups:
            gm = None if g_const is None else g_const.copy()
            for c in dynamic:
                cm = c.row_mask(fv)
                gm = cm.copy() if gm is None else np.logical_and(gm, cm, out=gm)
            m = gm if m is None else np.logical_or(m, gm, out=m)
        m.flags.writeable = False
        return m

    def _candidates_mask(self, rows: np.ndarray, fv: Mapping) -> np.ndarray:
        m = self.const_mask[rows] if self.const_mask is not None else None
        for g_const, dynamic in self.groups:
            gm = g_const[rows] if g_const is not None else None
            for c in dynamic:
                cm = c.mask(rows, fv)
                gm = cm if gm is None else (gm & cm)
            m = gm if m is None else (m | gm)
        return m
