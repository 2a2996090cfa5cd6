"""A user's recent interactions, and the Interactions conditions that read them.

:class:`InteractionHistory` interns the event types of ``recent_interactions`` to small codes and
caches the sorted item rows selected per set of event types; a data object may cache one per user
(``interaction_history(user_id)``, as ``CampaignData`` does until the user's next recorded event).
``BoundInteractions`` evaluates an ``Interactions.EVENT_TYPE`` expression: per candidate, is it
among the selected rows? The membership test is the native ``rows_in`` (a small hash set of the
selected rows, one probe per candidate), or :func:`rows_in_py` without the extension.
"""
from __future__ import annotations

import sys
import threading
from typing import Sequence

import numpy as np

from ..core import native
from ..errors import FILTER_ERROR_PREFIX
from .syntax import Expression
from .values import placeholder_strings

__all__ = ["InteractionHistory", "BoundInteractions", "rows_in_py"]

_PREFIX = FILTER_ERROR_PREFIX

_TLS = threading.local()


def _scratch(size: int) -> np.ndarray:
    """An all-False bool vector of at least ``size`` entries, private to this thread."""
    buf = getattr(_TLS, "buf", None)  # unset in a thread that has not asked yet
    if buf is None or buf.shape[0] < size:
        buf = _TLS.buf = np.zeros(max(size, 2 * (0 if buf is None else buf.shape[0]), 1024), dtype=bool)
    return buf


def rows_in_py(sel: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per row of ``rows`` (int64, may hold -1): is it in ``sel`` (sorted distinct rows >= 0)?

    The pure-Python twin of the native ``rows_in``: sets ``sel``'s entries of a per-thread
    all-False scratch vector, gathers the candidates from it and clears those entries again (a
    few branch-free passes; a binary search per candidate mispredicts). The scratch is longer
    than the largest selected row + 1, so candidate rows past the end clip to a False entry; a
    negative candidate clips to entry 0 and is set False afterwards.
    """
    n = sel.shape[0]
    if n == 0:
        return np.zeros(rows.shape[0], dtype=bool)
    buf = _scratch(int(sel[n - 1]) + 2)
    buf[sel] = True
    out = buf.take(rows, mode="clip")
    buf[sel] = False
    if sel[0] == 0:
        out[rows < 0] = False
    return out


#: Membership test: the extension's ``rows_in``, or ``rows_in_py`` without it.
_rows_in = native.function("rows_in", rows_in_py)


class InteractionHistory:
    """A snapshot of one user's recent interactions, ready for Interactions conditions.

    Built from ``recent_interactions``'s ``(item_rows, event_types)``: event types are interned
    to small integer codes once, and ``select`` returns (and caches, a few per snapshot) the
    sorted distinct item rows (-1 dropped) of the interactions whose event type matches; a
    candidate test is then one native hash-set probe per row (``rows_in_py`` without the
    extension). Immutable; a data object may cache one per user (``interaction_history(user_id)``)
    as long as it builds a new one when the history changes.
    """

    __slots__ = ("_rows", "_codes", "_names", "_sel", "__weakref__")

    _MAX_SELECTIONS = 16

    def __init__(self, item_rows, event_types: Sequence):
        rows = np.asarray(item_rows, dtype=np.int64).reshape(-1)
        if len(event_types) != rows.shape[0]:
            raise ValueError(f"{_PREFIX}recent_interactions returned {rows.shape[0]} rows "
                             f"but {len(event_types)} event types")
        names: dict = {}
        codes = np.fromiter((names.setdefault(t, len(names)) for t in event_types),
                            dtype=np.int32, count=rows.shape[0])
        self._rows = rows
        self._codes = codes
        self._names = names  # event type -> code
        self._sel: dict = {}

    def __len__(self) -> int:
        return self._rows.shape[0]

    def select(self, negate: bool, types: frozenset, wildcard: bool) -> np.ndarray:
        """Sorted distinct rows (>= 0) of the interactions with a type in ``types`` (``negate``:
        with a type not in ``types``; ``wildcard``: any type, or none when negated)."""
        key = (negate, wildcard, types)
        sel = self._sel.get(key)
        if sel is None:
            sel = self._select(negate, types, wildcard)
            if len(self._sel) >= self._MAX_SELECTIONS:
                self._sel.clear()
            self._sel[key] = sel
        return sel

    def _select(self, negate: bool, types: frozenset, wildcard: bool) -> np.ndarray:
        rows = self._rows
        names = self._names
        if wildcard:
            picked = rows[:0] if negate else rows
        else:
            wanted = [c for t, c in names.items() if (t in types) != negate]
            if not wanted:
                picked = rows[:0]
            elif len(wanted) == len(names):
                picked = rows
            elif len(wanted) == 1:
                picked = rows[self._codes == wanted[0]]
            else:
                picked = rows[np.isin(self._codes, wanted)]
        out = np.unique(picked)
        if out.shape[0] and out[0] < 0:
            out = out[np.searchsorted(out, 0):]
        out.flags.writeable = False
        return out

    @staticmethod
    def contains(sel: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Per candidate row (int64 ``rows``, may hold -1): is it in ``sel`` (a result of ``select``)?

        Natively (``rows_in``): one small hash set of ``sel``, one probe per row; else
        :func:`rows_in_py`.
        """
        return _rows_in(sel, rows)


class BoundInteractions:
    """An Interactions expression: per condition, ``(negate, event types, wildcard, placeholders)``."""

    __slots__ = ("expr", "include", "params", "user_conds", "conds")

    def __init__(self, expr: Expression, user_conds: tuple):
        self.expr = expr
        self.include = expr.include
        self.params = tuple(sorted(expr.placeholders))
        self.user_conds = user_conds
        conds = []
        for group in expr.groups:
            g = []
            for cond in group:
                # interned: the set lookups of the history's event types then compare by
                # identity when the caller interns its event-type strings too
                types = frozenset(sys.intern(v.text.lower()) for v in cond.values if v.kind == "string")
                wildcard = any(v.kind == "wildcard" for v in cond.values)
                params = tuple(v.text for v in cond.values if v.kind == "placeholder")
                g.append((cond.op == "NOT IN", types, wildcard, params))
            conds.append(tuple(g))
        self.conds = tuple(conds)

    def mask(self, rows: np.ndarray, ctx) -> np.ndarray:
        """Per candidate: does it satisfy the expression (``ctx.interacted`` per condition)?"""
        m = None
        for group in self.conds:
            gm = None
            for negate, types, wildcard, params in group:
                if params:
                    extra = set()
                    for p in params:
                        extra.update(s.lower() for s in placeholder_strings(ctx.filter_values, p))
                    if "*" in extra:
                        wildcard = True
                    types = types | extra
                cm = ctx.interacted(rows, negate, types, wildcard)
                gm = cm if gm is None else (gm & cm)
            m = gm if m is None else (m | gm)
        return m
