"""Filter expression syntax: tokenizer, recursive-descent parser and the immutable syntax tree.

``parse(text)`` turns an expression into a tuple of :class:`Expression` (each an OR of AND-groups of
:class:`Condition`, whose operands are :class:`Value`). Grammar errors raise
:class:`FilterSyntaxError` with the offending position; semantic errors the parser can see alone
(mixing Items and Interactions, a placeholder with NOT IN, ...) raise ``ValueError``. The grammar
is written down in docs/personalize.md. The number and string scanners are shared with the
filterValues parser (``values.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..errors import FILTER_ERROR_PREFIX, FilterSyntaxError

__all__ = [
    "MAX_EXPRESSION_LENGTH", "Value", "Condition", "Expression", "parse", "scan_number",
    "scan_string", "parse_number", "quote", "WHITESPACE",
]

#: Longest expression accepted, in characters.
MAX_EXPRESSION_LENGTH = 2500

_PREFIX = FILTER_ERROR_PREFIX

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

WHITESPACE = frozenset(" \t\r\n\f\v")
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


def scan_number(s: str, i: int) -> int:
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


def scan_string(s: str, i: int, error) -> tuple:
    """Scan the quoted string opening at ``s[i]``; returns ``(value, end)``.

    ``error(position, expected, found)`` builds the exception to raise. Linear in the string's own
    length: a backslash is looked for only before the next quote, so a text of many short strings
    is not rescanned to its end for each of them.
    """
    n = len(s)
    j = i + 1
    parts = []
    start = j
    while True:
        q = s.find('"', j)
        b = s.find("\\", j, n if q < 0 else q)
        if q < 0 and b < 0:
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


def parse_number(text: str) -> Optional[float]:
    """``text`` (stripped) as a number literal of the grammar, or None."""
    t = text.strip(" \t\r\n\f\v")
    if t and scan_number(t, 0) == len(t):
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
        while i < n and s[i] in WHITESPACE:
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
            value, j = scan_string(s, i, FilterSyntaxError)
            self.i = j
            return _Token(_STRING, s[i:j], i, value)
        if c in _DIGITS or c == "-":
            j = scan_number(s, i)
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


def quote(value: str) -> str:
    """``value`` as a double-quoted string literal of the grammar."""
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
        return quote(self.text)


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


def parse(expression: str) -> tuple:
    """The :class:`Expression` tuple of ``expression`` (type and length checked first)."""
    if not isinstance(expression, str):
        raise TypeError(f"filter expression must be a str, not {type(expression).__name__}")
    if not 1 <= len(expression) <= MAX_EXPRESSION_LENGTH:
        raise ValueError(f"{_PREFIX}length must be 1 to {MAX_EXPRESSION_LENGTH} characters, "
                         f"got {len(expression)}")
    return _Parser(expression).parse()
