"""Personalize filter expressions: compile once, evaluate vectorised over candidate items.

``compile_filter(text)`` parses an Amazon Personalize filter expression with a hand-written
tokenizer and recursive-descent parser into an immutable :class:`FilterPlan`;
``plan.evaluate(data, user_id, item_rows, filter_values)`` returns a boolean mask over the
candidates (True = keep). Removing the items and renormalising the scores is the caller's job.

Grammar (keywords, dataset names, ``ItemID`` and ``CurrentUser`` are case-insensitive; field names
are matched case-insensitively by upper-casing them; placeholder names are case-sensitive)::

    filter      := expression ( "|" expression )*
    expression  := ("INCLUDE" | "EXCLUDE") "ItemID" "WHERE" condition (("AND" | "OR") condition)*
                   [ "IF" user_cond ( "AND" user_cond )* ]
    condition   := field ("IN" | "NOT" "IN") "(" value ("," value)* ")"  |  field cmp operand
    field       := ("Items" | "Interactions") "." NAME
    user_cond   := "CurrentUser" "." NAME ( cmp operand | "IN" "(" value ("," value)* ")" )
    cmp         := "=" | "<" | "<=" | ">" | ">="
    value       := STRING | "$" NAME              (STRING "*" only for Interactions.EVENT_TYPE)
    operand     := NUMBER | "$" NAME

``STRING`` is double-quoted; inside it ``\\"`` is a quote and ``\\\\`` a backslash (any other
backslash escape is a syntax error). ``NUMBER`` is ``-?digits[.digits][(e|E)[+-]digits]``.
Syntax errors raise :class:`FilterSyntaxError` (a ``ValueError``) carrying the 0-based
``position``, what was ``expected`` and what was ``found``. Semantic errors (an expression mixing
Items and Interactions, a placeholder with NOT IN, an Interactions field other than EVENT_TYPE, a
comparison on Interactions, ``"*"`` outside Interactions.EVENT_TYPE, an empty expression or one
longer than 2500 characters) raise a plain ``ValueError``. Errors that need the schema (unknown
field, comparison on a non-numeric field, a non-number listed for a numeric field) are raised by
``plan.validate(data)``, which ``evaluate`` runs (cached per set of columns).

Semantics
---------
* AND binds tighter than OR inside one expression. Parentheses only enclose value lists.
* ``|`` combines independent expressions: (union of the INCLUDE results, or every candidate when
  no INCLUDE expression applies) minus (union of the EXCLUDE results).
* ``Items.F IN (...)``: categorical -- the value is listed; multi-valued -- any of the row's values
  is listed; numeric -- the value equals one of the listed values read as numbers. ``NOT IN`` is
  the complement among known items: a missing value (None / NaN / no values) satisfies NOT IN and
  never IN. ``= < <= > >=`` need a numeric field; NaN never satisfies a comparison.
* String matching is exact and case-sensitive, except event types, which are compared in lower
  case (``recent_interactions`` must return lower-cased event types).
* ``Interactions.EVENT_TYPE IN (types)``: the candidate is among the user's recent interactions
  (the caller has already kept the 100 most recent per event type) with one of ``types``; ``"*"``
  stands for every event type. ``Interactions.EVENT_TYPE NOT IN (types)``: the candidate is among
  the user's recent interactions with an event type that is *not* listed (items the user never
  interacted with do not match; with ``"*"`` listed nothing matches). Several Interactions
  conditions in one expression are each such a per-candidate test, combined with AND / OR.
* An item unknown to the model (row -1) has no metadata and no interactions: it satisfies no
  condition (neither IN nor NOT IN), so an INCLUDE expression drops it and an EXCLUDE keeps it.
  An interaction whose item row is -1 never matches anything.

Decisions where Personalize's documentation is silent
-----------------------------------------------------
* ``IF`` conditions are ANDed; the expression applies only when they all hold for the current
  user. An unknown user, or a user with no value for the field, fails the condition. An
  expression whose condition fails is *skipped*: it contributes nothing. If every INCLUDE
  expression of a filter is skipped, the filter behaves as if it had no INCLUDE expression (every
  candidate, minus the applicable EXCLUDE results) -- e.g. ``INCLUDE ItemID WHERE
  Items.GENRE IN ("kids") IF CurrentUser.AGE < 13`` restricts children and leaves adults alone.
  ``IF`` is allowed on Items and Interactions expressions alike.
* Placeholders: every placeholder of an INCLUDE expression (its IF clause included) must have a
  value, else ``ValueError`` naming the missing ones (checked before anything else is evaluated,
  whatever the IF clause says). An EXCLUDE expression with a placeholder that has no value is
  skipped. A value that is given but malformed raises ``ValueError`` naming the placeholder, in
  INCLUDE and EXCLUDE alike. ``filter_values`` keys no expression uses are ignored (even
  malformed ones), as Personalize does.
* A filter value is one or more double-quoted strings separated by commas (same escapes as in
  expressions; whitespace around items is allowed; the empty string is malformed). Where a number
  is needed (a comparison operand, or ``IN`` on a numeric field) items may also be bare numbers:
  ``10`` and ``"10"`` are equal; a comparison operand must be exactly one number.
* A placeholder value ``"*"`` means "every event type" for Interactions.EVENT_TYPE (as a literal
  ``"*"`` does); for any other field it is an ordinary string.
* ``IN`` lists on numeric fields hold quoted numbers (``Items.PRICE IN ("10", "12.5")``); a bare
  number inside a value list is a syntax error, as in the grammar.
* ``plan.datasets`` is the set of datasets the plan reads: ``"ITEMS"``, ``"INTERACTIONS"`` and
  ``"USERS"`` (the latter when an IF clause is present).
* ``item_rows`` must hold rows in ``[-1, n_items)``; all item metadata columns a plan uses must
  have the same length (the model's item count).

Performance
-----------
Constant conditions of an Items expression are folded, per set of columns, into one padded
boolean row mask (row -1 reads a False pad), so evaluating them is a single gather. Conditions
with placeholders are evaluated over the candidates the first time a set of filter values is
seen (cached per-column code tables for categorical, a CSR segment scan for multi-valued, direct
comparisons for numeric); when the same values come back, the whole expression is folded into a
padded whole-column mask for them (``_BoundItems.MAX_CACHED_MASKS`` kept per expression, oldest
dropped first), so a repeated request is one gather. Interactions conditions read an
:class:`InteractionHistory` (event types interned to small codes; the sorted rows of each event
type set cached), which the data object may cache per user (``interaction_history(user_id)``,
as ``CampaignData`` does until the user's next recorded event); the selected rows are scattered
into a per-thread scratch vector and the candidates gathered. Bindings are cached per plan keyed
by the ids of the columns (with weak references guarding against id reuse); ``validate`` runs as
part of binding.
"""
from __future__ import annotations

import math
import sys
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..core import native
from ..errors import FILTER_ERROR_PREFIX, FilterSyntaxError

__all__ = [
    "FilterSyntaxError",
    "FilterPlan",
    "Value",
    "Condition",
    "Expression",
    "compile_filter",
    "parse_filter_values",
    "InteractionHistory",
    "MAX_EXPRESSION_LENGTH",
]

MAX_EXPRESSION_LENGTH = 2500

_PREFIX = FILTER_ERROR_PREFIX


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_WS = frozenset(" \t\r\n\f\v")
_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT = _IDENT_START | _DIGITS

# token kinds
_WORD, _DOT, _LPAREN, _RPAREN, _COMMA, _PIPE, _CMP, _STRING, _NUMBER, _PARAM, _EOF, _BAD = range(12)
_PUNCT = {".": _DOT, "(": _LPAREN, ")": _RPAREN, ",": _COMMA, "|": _PIPE}


class _Token:
    __slots__ = ("kind", "text", "pos", "value")

    def __init__(self, kind: int, text: str, pos: int, value: Any = None):
        self.kind = kind
        self.text = text
        self.pos = pos
        self.value = value

    def describe(self) -> str:
        if self.kind == _EOF:
            return "end of expression"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return repr(text) if "'" in text else f"'{text}'"


def _scan_number(s: str, i: int) -> int:
    """End offset of the number literal starting at ``s[i]``, or -1 when there is none."""
    n = len(s)
    j = i
    if j < n and s[j] == "-":
        j += 1
    k = j
    while j < n and s[j] in _DIGITS:
        j += 1
    if j == k:
        return -1
    if j < n and s[j] == ".":
        j += 1
        while j < n and s[j] in _DIGITS:
            j += 1
    if j < n and s[j] in "eE":
        k = j + 1
        if k < n and s[k] in "+-":
            k += 1
        m = k
        while k < n and s[k] in _DIGITS:
            k += 1
        if k > m:  # an exponent without digits is not part of the number
            j = k
    return j


def _scan_string(s: str, i: int, error) -> tuple:
    """Scan the quoted string opening at ``s[i]``; returns ``(value, end)``.

    ``error(position, expected, found)`` builds the exception to raise.
    """
    n = len(s)
    j = i + 1
    parts = []
    start = j
    while True:
        q = s.find('"', j)
        b = s.find("\\", j)
        if q < 0:
            if b < 0:
                raise error(n, f"'\"' (closing the string opened at position {i})", "end of expression")
        if 0 <= b and (q < 0 or b < q):
            nxt = s[b + 1:b + 2]
            if nxt not in ('"', "\\"):
                raise error(b, "'\\\"' or '\\\\' after a backslash",
                            "end of expression" if nxt == "" else repr("\\" + nxt))
            parts.append(s[start:b])
            parts.append(nxt)
            j = start = b + 2
            continue
        parts.append(s[start:q])
        return "".join(parts), q + 1


def _parse_number(text: str) -> Optional[float]:
    """``text`` (stripped) as a number literal of the grammar, or None."""
    t = text.strip(" \t\r\n\f\v")
    if t and _scan_number(t, 0) == len(t):
        return float(t)
    return None


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def next(self) -> _Token:
        s = self.text
        n = len(s)
        i = self.i
        while i < n and s[i] in _WS:
            i += 1
        if i >= n:
            self.i = n
            return _Token(_EOF, "", n)
        c = s[i]
        if c in _IDENT_START:
            j = i + 1
            while j < n and s[j] in _IDENT:
                j += 1
            self.i = j
            return _Token(_WORD, s[i:j], i)
        if c in _PUNCT:
            self.i = i + 1
            return _Token(_PUNCT[c], c, i)
        if c in "<>=":
            j = i + 2 if c != "=" and s[i + 1:i + 2] == "=" else i + 1
            self.i = j
            return _Token(_CMP, s[i:j], i)
        if c == '"':
            value, j = _scan_string(s, i, FilterSyntaxError)
            self.i = j
            return _Token(_STRING, s[i:j], i, value)
        if c in _DIGITS or c == "-":
            j = _scan_number(s, i)
            if j > 0:
                self.i = j
                return _Token(_NUMBER, s[i:j], i, float(s[i:j]))
        if c == "$":
            j = i + 1
            while j < n and s[j] in _IDENT:
                j += 1
            if j > i + 1:
                self.i = j
                return _Token(_PARAM, s[i:j], i, s[i + 1:j])
        self.i = i + 1
        return _Token(_BAD, c, i)


# --------------------------------------------------------------------------------------------
# Syntax tree (immutable)
# --------------------------------------------------------------------------------------------

_DATASET_NAMES = {"ITEMS": "Items", "INTERACTIONS": "Interactions", "USERS": "CurrentUser"}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Value:
    """One value of a list or a comparison operand.

    ``kind`` is ``"string"`` (``text`` = the unescaped string), ``"wildcard"`` (``"*"``),
    ``"number"`` (``text`` = the literal, ``number`` its value) or ``"placeholder"``
    (``text`` = the name without ``$``).
    """

    kind: str
    text: str
    number: Optional[float] = None

    def __str__(self) -> str:
        if self.kind == "placeholder":
            return "$" + self.text
        if self.kind == "number":
            return self.text
        return _quote(self.text)


@dataclass(frozen=True)
class Condition:
    """``dataset`` ("ITEMS", "INTERACTIONS" or "USERS"), upper-case ``field``, ``op`` ("IN",
    "NOT IN", "=", "<", "<=", ">", ">=") and ``values`` (one operand for a comparison)."""

    dataset: str
    field: str
    op: str
    values: tuple
    position: int = 0

    @property
    def placeholders(self) -> frozenset:
        return frozenset(v.text for v in self.values if v.kind == "placeholder")

    @property
    def label(self) -> str:
        return f"{_DATASET_NAMES[self.dataset]}.{self.field}"

    def __str__(self) -> str:
        if self.op in ("IN", "NOT IN"):
            return f"{self.label} {self.op} ({', '.join(map(str, self.values))})"
        return f"{self.label} {self.op} {self.values[0]}"


@dataclass(frozen=True)
class Expression:
    """One ``|``-separated expression: ``groups`` is OR of AND-groups of conditions."""

    action: str  # "INCLUDE" | "EXCLUDE"
    dataset: str  # "ITEMS" | "INTERACTIONS"
    groups: tuple  # tuple[tuple[Condition, ...], ...]
    user_conditions: tuple  # tuple[Condition, ...] (the IF clause)

    @property
    def include(self) -> bool:
        return self.action == "INCLUDE"

    @property
    def placeholders(self) -> frozenset:
        names = set()
        for group in self.groups:
            for c in group:
                names |= c.placeholders
        for c in self.user_conditions:
            names |= c.placeholders
        return frozenset(names)

    def __str__(self) -> str:
        where = " OR ".join(" AND ".join(map(str, g)) for g in self.groups)
        text = f"{self.action} ItemID WHERE {where}"
        if self.user_conditions:
            text += " IF " + " AND ".join(map(str, self.user_conditions))
        return text


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

def _semantic(message: str, position: int) -> ValueError:
    return ValueError(f"{_PREFIX}{message} (at position {position})")


class _Parser:
    def __init__(self, text: str):
        self.lexer = _Lexer(text)
        self.tok = self.lexer.next()

    def advance(self) -> _Token:
        t = self.tok
        self.tok = self.lexer.next()
        return t

    def fail(self, expected: str) -> FilterSyntaxError:
        return FilterSyntaxError(self.tok.pos, expected, self.tok.describe())

    def at_kw(self, keyword: str) -> bool:
        return self.tok.kind == _WORD and self.tok.text.upper() == keyword

    def expect_kw(self, keyword: str, expected: str) -> _Token:
        if not self.at_kw(keyword):
            raise self.fail(expected)
        return self.advance()

    def expect(self, kind: int, expected: str) -> _Token:
        if self.tok.kind != kind:
            raise self.fail(expected)
        return self.advance()

    # filter := expression ("|" expression)*
    def parse(self) -> tuple:
        expressions = []
        while True:
            expr, follow = self.expression()
            expressions.append(expr)
            if self.tok.kind == _PIPE:
                self.advance()
                continue
            if self.tok.kind != _EOF:
                raise self.fail(follow)
            return tuple(expressions)

    def expression(self) -> tuple:
        if self.at_kw("INCLUDE") or self.at_kw("EXCLUDE"):
            action = self.advance().text.upper()
        else:
            raise self.fail("'INCLUDE' or 'EXCLUDE'")
        self.expect_kw("ITEMID", "'ItemID'")
        self.expect_kw("WHERE", "'WHERE'")
        first = self.condition(None)
        dataset = first.dataset
        groups = [[first]]
        while self.at_kw("AND") or self.at_kw("OR"):
            connector = self.advance().text.upper()
            cond = self.condition(dataset)
            if connector == "AND":
                groups[-1].append(cond)
            else:
                groups.append([cond])
        user_conditions = []
        follow = "'AND', 'OR', 'IF', '|' or end of expression"
        if self.at_kw("IF"):
            self.advance()
            user_conditions.append(self.user_condition())
            while self.at_kw("AND"):
                self.advance()
                user_conditions.append(self.user_condition())
            follow = "'AND', '|' or end of expression"
        expr = Expression(action, dataset, tuple(tuple(g) for g in groups), tuple(user_conditions))
        return expr, follow

    def condition(self, dataset: Optional[str]) -> Condition:
        pos = self.tok.pos
        if self.at_kw("ITEMS") or self.at_kw("INTERACTIONS"):
            ds = self.advance().text.upper()
        else:
            raise self.fail("'Items' or 'Interactions'")
        self.expect(_DOT, "'.'")
        field = self.expect(_WORD, "a field name").text.upper()
        label = f"{_DATASET_NAMES[ds]}.{field}"
        if dataset is not None and ds != dataset:
            raise _semantic(f"one expression cannot mix {_DATASET_NAMES[dataset]} and "
                            f"{_DATASET_NAMES[ds]} conditions ({label})", pos)
        if ds == "INTERACTIONS" and field != "EVENT_TYPE":
            raise _semantic(f"Interactions filters can only test EVENT_TYPE, not {label}", pos)
        if self.at_kw("IN"):
            self.advance()
            op = "IN"
        elif self.at_kw("NOT"):
            self.advance()
            self.expect_kw("IN", "'IN'")
            op = "NOT IN"
        elif self.tok.kind == _CMP:
            op_tok = self.advance()
            op = op_tok.text
            if ds == "INTERACTIONS":
                raise _semantic(f"comparison operator '{op}' cannot be used with {label}", op_tok.pos)
            operand = self.operand()
            return Condition(ds, field, op, (operand,), pos)
        else:
            raise self.fail("'IN', 'NOT IN' or a comparison operator")
        values = self.value_list(label, allow_wildcard=(ds == "INTERACTIONS"),
                                 allow_placeholder=(op == "IN"))
        return Condition(ds, field, op, values, pos)

    def user_condition(self) -> Condition:
        pos = self.tok.pos
        self.expect_kw("CURRENTUSER", "'CurrentUser'")
        self.expect(_DOT, "'.'")
        field = self.expect(_WORD, "a field name").text.upper()
        label = f"CurrentUser.{field}"
        if self.at_kw("IN"):
            self.advance()
            values = self.value_list(label, allow_wildcard=False, allow_placeholder=True)
            return Condition("USERS", field, "IN", values, pos)
        if self.tok.kind == _CMP:
            op = self.advance().text
            return Condition("USERS", field, op, (self.operand(),), pos)
        raise self.fail("'IN' or a comparison operator")

    def value_list(self, label: str, allow_wildcard: bool, allow_placeholder: bool) -> tuple:
        self.expect(_LPAREN, "'('")
        values = [self.value(label, allow_wildcard, allow_placeholder)]
        while self.tok.kind == _COMMA:
            self.advance()
            values.append(self.value(label, allow_wildcard, allow_placeholder))
        self.expect(_RPAREN, "',' or ')'")
        return tuple(values)

    def value(self, label: str, allow_wildcard: bool, allow_placeholder: bool) -> Value:
        tok = self.tok
        if tok.kind == _STRING:
            self.advance()
            if tok.value == "*":
                if not allow_wildcard:
                    raise _semantic(f'"*" can only be used with Interactions.EVENT_TYPE, not {label}',
                                    tok.pos)
                return Value("wildcard", "*")
            return Value("string", tok.value)
        if tok.kind == _PARAM:
            self.advance()
            if not allow_placeholder:
                raise _semantic(f"placeholder {tok.text} cannot be used with NOT IN ({label})", tok.pos)
            return Value("placeholder", tok.value)
        raise self.fail("a quoted string or a $placeholder")

    def operand(self) -> Value:
        tok = self.tok
        if tok.kind == _NUMBER:
            self.advance()
            return Value("number", tok.text, tok.value)
        if tok.kind == _PARAM:
            self.advance()
            return Value("placeholder", tok.value)
        raise self.fail("a number or a $placeholder")


# --------------------------------------------------------------------------------------------
# Filter values
# --------------------------------------------------------------------------------------------

def _scan_values(raw: str, allow_numbers: bool) -> tuple:
    """Items of a filterValues string; raises ValueError (without the placeholder name)."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    n = len(raw)
    i = 0
    out = []

    def error(position, expected, found):
        return ValueError(f"expected {expected} at position {position}, found {found}")

    while True:
        while i < n and raw[i] in _WS:
            i += 1
        if i < n and raw[i] == '"':
            value, i = _scan_string(raw, i, error)
            out.append(value)
        else:
            j = _scan_number(raw, i) if allow_numbers and i < n else -1
            if j < 0:
                found = "end of value" if i >= n else repr(raw[i])
                expected = "a quoted string or a number" if allow_numbers else "a quoted string"
                raise error(i, expected, found)
            out.append(raw[i:j])
            i = j
        while i < n and raw[i] in _WS:
            i += 1
        if i >= n:
            return tuple(out)
        if raw[i] != ",":
            raise error(i, "',' or end of value", repr(raw[i]))
        i += 1


@lru_cache(maxsize=4096)
def _cached_values(raw: str, allow_numbers: bool) -> tuple:
    return _scan_values(raw, allow_numbers)


def parse_filter_values(s: str) -> list:
    """Split a filterValues entry into its strings: ``'"comedy","drama"'`` -> ``["comedy", "drama"]``.

    Items are double-quoted (``\\"`` and ``\\\\`` escapes), separated by commas, with optional
    whitespace around them. Raises ``ValueError`` for anything else (including ``""``-less input).
    """
    return list(_cached_values(s, False))


def _placeholder_strings(filter_values: Mapping, name: str) -> tuple:
    try:
        return _cached_values(filter_values[name], False)
    except ValueError as exc:
        raise ValueError(f"filter value for placeholder ${name} is malformed: {exc}") from None


def _placeholder_numbers(filter_values: Mapping, name: str) -> list:
    try:
        items = _cached_values(filter_values[name], True)
    except ValueError as exc:
        raise ValueError(f"filter value for placeholder ${name} is malformed: {exc}") from None
    out = []
    for item in items:
        x = _parse_number(item)
        if x is None:
            raise ValueError(f"filter value for placeholder ${name} must be numeric, got {item!r}")
        out.append(x)
    return out


def _placeholder_number(filter_values: Mapping, name: str) -> float:
    nums = _placeholder_numbers(filter_values, name)
    if len(nums) != 1:
        raise ValueError(f"filter value for placeholder ${name} must be exactly one number, "
                         f"got {len(nums)} values")
    return nums[0]


# --------------------------------------------------------------------------------------------
# Binding a plan to concrete columns
# --------------------------------------------------------------------------------------------

_CMP_FUNCS = {
    "=": np.equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
_CMP_SCALAR = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
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
    d = {"n": n}
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


def _column_kind(col) -> str:
    kind = getattr(col, "kind", None)
    if kind not in ("categorical", "multi_categorical", "numeric"):
        raise ValueError(f"{_PREFIX}unsupported column {col!r}")
    return kind


def _numbers_for(cond: Condition, strings) -> list:
    out = []
    for s in strings:
        x = _parse_number(s)
        if x is None:
            raise ValueError(f"{_PREFIX}{cond.label} is numeric; {_quote(s)} is not a number")
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
        self.kind = _column_kind(col)
        self.pad = _padded(col)
        self.params = tuple(v.text for v in cond.values if v.kind == "placeholder")
        self.const_strings = tuple(v.text for v in cond.values if v.kind == "string")
        self.const_numbers = None
        if self.kind == "numeric" and cond.op == "IN":
            self.const_numbers = _numbers_for(cond, self.const_strings)
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
            nums.extend(_placeholder_numbers(fv, p))
        return nums

    def _strings(self, fv: Mapping) -> tuple:
        """The listed strings: constants, then each placeholder's values."""
        strings = self.const_strings
        for p in self.params:
            strings = strings + _placeholder_strings(fv, p)
        return strings

    def mask(self, rows: np.ndarray, fv: Mapping) -> np.ndarray:
        cond = self.cond
        if cond.op != "IN":  # comparison with a placeholder operand
            x = _placeholder_number(fv, self.params[0])
            return _CMP_FUNCS[cond.op](self.pad["values"][rows], x)
        if self.kind == "numeric":
            return _equals_any(self.pad["values"][rows], self._numbers(fv))
        strings = self._strings(fv)
        if self.kind == "categorical":
            return self._table(strings)[self.pad["codes"][rows]]
        # multi-valued: a padded whole-column mask per distinct value list (a few kept), so a
        # repeated filterValues is one gather; the first use of a list scans the candidates only
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
            x = _placeholder_number(fv, self.params[0])
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
    kind = _column_kind(col)
    n = len(col)
    out = np.zeros(n + 1, dtype=bool)
    negate = cond.op == "NOT IN"
    if cond.op in ("IN", "NOT IN"):
        strings = [v.text for v in cond.values]
        if kind == "numeric":
            nums = _numbers_for(cond, strings)
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
            raise _kind_error(cond, kind)
        with np.errstate(invalid="ignore"):
            out[:n] = _CMP_FUNCS[cond.op](col.values, cond.values[0].number)
    return out


def _kind_error(cond: Condition, kind: str) -> ValueError:
    return ValueError(f"{_PREFIX}comparison '{cond.op}' needs a numeric field, but {cond.label} "
                      f"is {kind.replace('_', '-')}")


class _BoundItems:
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
        self._seen: dict = {}  # filter values evaluated once over the candidates only
        self._lock = threading.Lock()
        const_mask = None
        groups = []
        for group in expr.groups:
            g_const = None
            g_dynamic = []
            for cond in group:
                col = columns[cond.field]
                kind = _column_kind(col)
                if cond.op not in ("IN", "NOT IN") and kind != "numeric":
                    raise _kind_error(cond, kind)
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

    def mask(self, rows: np.ndarray, ctx: "_Context") -> np.ndarray:
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


class _BoundInteractions:
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
                # interned: list.count/index over the caller's event types then compare by
                # identity when the caller interns its event-type strings too
                types = frozenset(sys.intern(v.text.lower()) for v in cond.values if v.kind == "string")
                wildcard = any(v.kind == "wildcard" for v in cond.values)
                params = tuple(v.text for v in cond.values if v.kind == "placeholder")
                g.append((cond.op == "NOT IN", types, wildcard, params))
            conds.append(tuple(g))
        self.conds = tuple(conds)

    def mask(self, rows: np.ndarray, ctx: "_Context") -> np.ndarray:
        m = None
        for group in self.conds:
            gm = None
            for negate, types, wildcard, params in group:
                if params:
                    extra = set()
                    for p in params:
                        extra.update(s.lower() for s in _placeholder_strings(ctx.filter_values, p))
                    if "*" in extra:
                        wildcard = True
                    types = types | extra
                cm = ctx.interacted(rows, negate, types, wildcard)
                gm = cm if gm is None else (gm & cm)
            m = gm if m is None else (m | gm)
        return m


class _UserCondition:
    __slots__ = ("cond", "col", "kind", "const_strings", "const_numbers", "params", "label")

    def __init__(self, cond: Condition, col):
        self.cond = cond
        self.col = col
        self.kind = _column_kind(col)
        self.label = cond.label
        if cond.op != "IN" and self.kind != "numeric":
            raise _kind_error(cond, self.kind)
        self.params = tuple(v.text for v in cond.values if v.kind == "placeholder")
        self.const_strings = frozenset(v.text for v in cond.values if v.kind == "string")
        self.const_numbers = None
        if self.kind == "numeric":
            if cond.op == "IN":
                self.const_numbers = _numbers_for(cond, sorted(self.const_strings))
            elif not self.params:
                self.const_numbers = [cond.values[0].number]

    def holds(self, u: int, fv: Mapping) -> bool:
        col = self.col
        if u >= len(col):
            return False
        if self.kind == "numeric":
            v = float(col.values[u])
            if math.isnan(v):
                return False
            if self.cond.op != "IN":
                x = self.const_numbers[0] if not self.params else _placeholder_number(fv, self.params[0])
                return _CMP_SCALAR[self.cond.op](v, x)
            nums = list(self.const_numbers)
            for p in self.params:
                nums.extend(_placeholder_numbers(fv, p))
            return v in nums
        strings = set(self.const_strings)
        for p in self.params:
            strings.update(_placeholder_strings(fv, p))
        if self.kind == "categorical":
            code = int(col.codes[u])
            return code >= 0 and col.categories[code] in strings
        return any(s in strings for s in col.values_of(u))


class _BoundPlan:
    __slots__ = ("exprs",)

    def __init__(self, plan: "FilterPlan", item_cols: Mapping, user_cols: Mapping):
        lengths = {len(c) for c in item_cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"{_PREFIX}item metadata columns have different lengths {sorted(lengths)}")
        exprs = []
        for expr in plan.expressions:
            user_conds = tuple(_UserCondition(c, user_cols[c.field]) for c in expr.user_conditions)
            if expr.dataset == "ITEMS":
                exprs.append(_BoundItems(expr, item_cols, user_conds))
            else:
                exprs.append(_BoundInteractions(expr, user_conds))
        self.exprs = tuple(exprs)


class InteractionHistory:
    """A snapshot of one user's recent interactions, ready for Interactions conditions.

    Built from ``recent_interactions``'s ``(item_rows, event_types)``: event types are interned
    to small integer codes once, and ``select`` returns (and caches, a few per snapshot) the
    sorted distinct item rows (-1 dropped) of the interactions whose event type matches; a
    candidate test is then one native hash-set probe per row (a scatter and a gather without the
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

        Natively (``_core.rows_in``): one small hash set of ``sel``, one probe per row.
        """
        if _rows_in is not None:
            return _rows_in(sel, rows)
        return InteractionHistory.contains_numpy(sel, rows)

    @staticmethod
    def contains_numpy(sel: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``contains`` without the extension.

        Scatters ``sel`` into a per-thread scratch vector, gathers the candidates and clears it
        again: a few small, branch-free passes (a binary search per candidate mispredicts).
        The scratch is longer than the largest selected row + 1, so candidate rows past the end
        clip to a False entry; candidate -1 clips to entry 0 and is fixed up.
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


_TLS = threading.local()

#: Native membership test (``rankcore._core.rows_in``), or None without the extension.
_rows_in = native.function("rows_in")


def _scratch(size: int) -> np.ndarray:
    """An all-False bool vector of at least ``size`` entries, private to this thread."""
    buf = getattr(_TLS, "buf", None)
    if buf is None or buf.shape[0] < size:
        buf = _TLS.buf = np.zeros(max(size, 2 * (0 if buf is None else buf.shape[0]), 1024), dtype=bool)
    return buf


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
            get = getattr(self.data, "interaction_history", None)
            if get is not None:
                self._hist = get(self.user_id)
            else:
                self._hist = InteractionHistory(*self.data.recent_interactions(self.user_id))
        return self._hist

    def interacted(self, rows: np.ndarray, negate: bool, types: frozenset, wildcard: bool) -> np.ndarray:
        """Per candidate: is it among the user's recent interactions of the selected event types?"""
        hist = self._hist if self._hist is not None else self._history()
        return hist.contains(hist.select(negate, types, wildcard), rows)


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------

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

        ``data`` provides ``item_columns``, ``user_columns``, ``user_row(user_id)`` and
        ``recent_interactions(user_id)`` (see the module docstring). ``item_rows`` is an int64
        array of model rows, -1 for items unknown to the model. ``filter_values`` maps placeholder
        names (no ``$``) to filterValues strings.
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

    Raises :class:`FilterSyntaxError` for grammar errors and ``ValueError`` for semantic ones.
    """
    if not isinstance(expression, str):
        raise TypeError(f"filter expression must be a str, not {type(expression).__name__}")
    if not 1 <= len(expression) <= MAX_EXPRESSION_LENGTH:
        raise ValueError(f"{_PREFIX}length must be 1 to {MAX_EXPRESSION_LENGTH} characters, "
                         f"got {len(expression)}")
    return FilterPlan(expression, _Parser(expression).parse())
