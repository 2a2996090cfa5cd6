"""Compiled filter plans: ``compile_filter`` and :class:`FilterPlan`.

A plan is bound to a data object's metadata columns the first time it meets them (which is also
where it is validated against the schema); bindings are cached per plan, keyed by the ids of the
columns, with weak references guarding against id reuse. ``FilterPlan.evaluate`` combines the
bound expressions' masks over the candidates: (union of the applicable INCLUDE results, or every
candidate) minus (union of the applicable EXCLUDE results). ``IF`` clauses are tested per user
(``_UserCondition``); the user's row and history are read lazily (``_Context``).
"""
from __future__ import annotations

import math
import weakref
from typing import Mapping, Optional

import numpy as np

from ..errors import FILTER_ERROR_PREFIX
from .history import BoundInteractions, InteractionHistory
from .items import BoundItems, column_kind, kind_error, numbers_for
from .syntax import Condition, parse
from .values import placeholder_number, placeholder_numbers, placeholder_strings

__all__ = ["FilterPlan", "compile_filter"]

_PREFIX = FILTER_ERROR_PREFIX

_CMP_SCALAR = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _UserCondition:
    """One condition of an ``IF`` clause, bound to a user metadata column."""

    __slots__ = ("cond", "col", "kind", "const_strings", "const_numbers", "params", "label")

    def __init__(self, cond: Condition, col):
        self.cond = cond
        self.col = col
        self.kind = column_kind(col)
        self.label = cond.label
        if cond.op != "IN" and self.kind != "numeric":
            raise kind_error(cond, self.kind)
        self.params = tuple(v.text for v in cond.values if v.kind == "placeholder")
        self.const_strings = frozenset(v.text for v in cond.values if v.kind == "string")
        self.const_numbers = None
        if self.kind == "numeric":
            if cond.op == "IN":
                self.const_numbers = numbers_for(cond, sorted(self.const_strings))
            elif not self.params:
                self.const_numbers = [cond.values[0].number]

    def holds(self, u: int, fv: Mapping) -> bool:
        """Whether user row ``u`` satisfies the condition (a missing value never does)."""
        col = self.col
        if u >= len(col):
            return False
        if self.kind == "numeric":
            v = float(col.values[u])
            if math.isnan(v):
                return False
            if self.cond.op != "IN":
                x = self.const_numbers[0] if not self.params else placeholder_number(fv, self.params[0])
                return _CMP_SCALAR[self.cond.op](v, x)
            nums = list(self.const_numbers)
            for p in self.params:
                nums.extend(placeholder_numbers(fv, p))
            return v in nums
        strings = set(self.const_strings)
        for p in self.params:
            strings.update(placeholder_strings(fv, p))
        if self.kind == "categorical":
            code = int(col.codes[u])
            return code >= 0 and col.categories[code] in strings
        return any(s in strings for s in col.values_of(u))


class _BoundPlan:
    """Every expression of a plan bound to one set of columns (checked against them)."""

    __slots__ = ("exprs",)

    def __init__(self, plan: "FilterPlan", item_cols: Mapping, user_cols: Mapping):
        lengths = {len(c) for c in item_cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"{_PREFIX}item metadata columns have different lengths {sorted(lengths)}")
        exprs = []
        for expr in plan.expressions:
            user_conds = tuple(_UserCondition(c, user_cols[c.field]) for c in expr.user_conditions)
            if expr.dataset == "ITEMS":
                exprs.append(BoundItems(expr, item_cols, user_conds))
            else:
                exprs.append(BoundInteractions(expr, user_conds))
        self.exprs = tuple(exprs)


class _Context:
    """What one evaluation needs lazily: the user's row and recent interactions."""

    __slots__ = ("data", "user_id", "filter_values", "_user_row", "_hist")

    def __init__(self, data, user_id, filter_values: Mapping):
        self.data = data
        self.user_id = user_id
        self.filter_values = filter_values
        self._user_row = None
        self._hist = None

    def user_row(self) -> int:
        if self._user_row is None:
            self._user_row = int(self.data.user_row(self.user_id))
        return self._user_row

    def user_holds(self, conds: tuple) -> bool:
        u = self.user_row()
        if u < 0:
            return False
        fv = self.filter_values
        for c in conds:
            if not c.holds(u, fv):
                return False
        return True

    def _history(self) -> InteractionHistory:
        if self._hist is None:
            get = getattr(self.data, "interaction_history", None)  # optional: a per-user cache
            if get is not None:
                self._hist = get(self.user_id)
            else:
                self._hist = InteractionHistory(*self.data.recent_interactions(self.user_id))
        return self._hist

    def interacted(self, rows: np.ndarray, negate: bool, types: frozenset, wildcard: bool) -> np.ndarray:
        """Per candidate: is it among the user's recent interactions of the selected event types?"""
        hist = self._hist if self._hist is not None else self._history()
        return hist.contains(hist.select(negate, types, wildcard), rows)


def _pick_columns(fields, data, attribute: str, dataset: str, kind: str) -> dict:
    """``{field: column}`` from ``getattr(data, attribute)`` (read only when fields are asked for)."""
    if not fields:
        return {}
    available = getattr(data, attribute)
    out = {}
    for f in fields:
        col = available.get(f)
        if col is None:
            raise ValueError(f"{_PREFIX}{dataset}.{f} is not {kind} metadata field "
                             f"(known: {', '.join(sorted(available)) or 'none'})")
        out[f] = col
    return out


class FilterPlan:
    """A compiled filter expression. Immutable; cheap to evaluate many times.

    Attributes: ``expression`` (the source text), ``expressions`` (the parsed
    :class:`Expression` tuple), ``placeholders`` (names used, without ``$``),
    ``required_placeholders`` (those of INCLUDE expressions), ``datasets`` (subset of
    ``{"ITEMS", "INTERACTIONS", "USERS"}``).
    """

    __slots__ = ("_expression", "_expressions", "_placeholders", "_required", "_datasets",
                 "_item_fields", "_user_fields", "_bound", "__weakref__")

    def __init__(self, expression: str, expressions: tuple):
        s = object.__setattr__
        s(self, "_expression", expression)
        s(self, "_expressions", expressions)
        names, required, datasets, item_fields, user_fields = set(), set(), set(), [], []
        for e in expressions:
            p = e.placeholders
            names |= p
            if e.include:
                required |= p
            datasets.add(e.dataset)
            for g in e.groups:
                for c in g:
                    if c.dataset == "ITEMS" and c.field not in item_fields:
                        item_fields.append(c.field)
            for c in e.user_conditions:
                datasets.add("USERS")
                if c.field not in user_fields:
                    user_fields.append(c.field)
        s(self, "_placeholders", frozenset(names))
        s(self, "_required", tuple(sorted(required)))
        s(self, "_datasets", frozenset(datasets))
        s(self, "_item_fields", tuple(item_fields))
        s(self, "_user_fields", tuple(user_fields))
        s(self, "_bound", {})

    def __setattr__(self, name, value):
        raise AttributeError("FilterPlan is immutable")

    def __delattr__(self, name):
        raise AttributeError("FilterPlan is immutable")

    expression = property(lambda self: self._expression, doc="The expression text as given.")
    expressions = property(lambda self: self._expressions, doc="Parsed expressions, in order.")
    placeholders = property(lambda self: self._placeholders, doc="Placeholder names used.")
    required_placeholders = property(lambda self: frozenset(self._required),
                                     doc="Placeholders of INCLUDE expressions (must be given).")
    datasets = property(lambda self: self._datasets, doc="Datasets read by the plan.")

    def canonical(self) -> str:
        """The expression normalised (keywords upper-case, field names upper-case, single spaces)."""
        return " | ".join(map(str, self._expressions))

    def __str__(self) -> str:
        return self.canonical()

    def __repr__(self) -> str:
        extra = f", placeholders={sorted(self._placeholders)}" if self._placeholders else ""
        return f"FilterPlan({self.canonical()!r}{extra})"

    # -- schema --------------------------------------------------------------------------------
    def _columns(self, data) -> tuple:
        item_cols = _pick_columns(self._item_fields, data, "item_columns", "Items", "an item")
        user_cols = _pick_columns(self._user_fields, data, "user_columns", "CurrentUser", "a user")
        return item_cols, user_cols

    def _bind(self, data) -> _BoundPlan:
        if not self._item_fields and not self._user_fields:  # no metadata columns: one binding
            entry = self._bound.get(())
            if entry is not None:
                return entry[1]
        item_cols, user_cols = self._columns(data)
        cols = tuple(item_cols.values()) + tuple(user_cols.values())
        key = tuple(map(id, cols))
        entry = self._bound.get(key)
        if entry is not None:
            refs, bound = entry
            for r, c in zip(refs, cols):
                if r() is not c:
                    break
            else:
                return bound
        bound = _BoundPlan(self, item_cols, user_cols)
        refs = []
        for c in cols:
            try:
                refs.append(weakref.ref(c))
            except TypeError:
                refs.append(lambda c=c: c)
        if len(self._bound) >= 8:
            self._bound.clear()
        self._bound[key] = (tuple(refs), bound)
        return bound

    def validate(self, data) -> None:
        """Check the plan against ``data``'s schema; raises ``ValueError`` naming the field."""
        self._bind(data)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, data, user_id, item_rows, filter_values: Optional[Mapping[str, str]] = None) -> np.ndarray:
        """Boolean mask over ``item_rows`` (True = keep).

        ``data`` provides ``item_columns`` and ``user_columns`` (upper-case field name ->
        column), ``user_row(user_id)`` (-1 for an unknown user), ``recent_interactions(user_id)``
        (``(item_rows, event_types)``, event types lower-cased) and optionally
        ``interaction_history(user_id)`` (a cached :class:`InteractionHistory`). ``item_rows`` is
        an int64 array of model rows in ``[-1, n_items)``, -1 for items unknown to the model.
        ``filter_values`` maps placeholder names (no ``$``) to filterValues strings.
        """
        rows = item_rows
        if not (type(rows) is np.ndarray and rows.dtype == np.int64 and rows.flags.c_contiguous):
            rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise ValueError(f"{_PREFIX}item_rows must be one-dimensional")
        bound = self._bind(data)
        fv = filter_values if filter_values is not None else {}
        if self._required:
            missing = [p for p in self._required if p not in fv]
            if missing:
                names = ", ".join("$" + p for p in missing)
                raise ValueError(f"{_PREFIX}no value given for placeholder{'s' if len(missing) > 1 else ''} "
                                 f"{names} of an INCLUDE expression")
        ctx = _Context(data, user_id, fv)
        inc = exc = None
        for be in bound.exprs:
            if be.params and not be.include:
                if any(p not in fv for p in be.params):
                    continue
            if be.user_conds and not ctx.user_holds(be.user_conds):
                continue
            m = be.mask(rows, ctx)
            if be.include:
                inc = m if inc is None else (inc | m)
            else:
                exc = m if exc is None else (exc | m)
        if inc is None:
            return np.ones(rows.shape[0], dtype=bool) if exc is None else ~exc
        return inc if exc is None else np.greater(inc, exc)  # inc & ~exc in one pass


def compile_filter(expression: str) -> FilterPlan:
    """Parse ``expression`` into a :class:`FilterPlan`.

    Raises :class:`FilterSyntaxError` for grammar errors, ``ValueError`` for semantic ones (and
    for an empty expression or one over ``MAX_EXPRESSION_LENGTH`` characters), ``TypeError`` for
    a non-string.
    """
    return FilterPlan(expression, parse(expression))
