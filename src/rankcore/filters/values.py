"""filterValues: the strings given for an expression's ``$placeholders``, parsed and looked up.

A value is one or more double-quoted strings separated by commas (bare numbers too where a number
is needed); ``parse_filter_values`` splits one, and the ``placeholder_*`` lookups return a
placeholder's strings or numbers, raising ``ValueError`` that names a malformed placeholder.
Parsed values are cached (the same strings come back request after request). The rules are
written down in docs/personalize.md.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from .syntax import WHITESPACE, parse_number, scan_number, scan_string

__all__ = ["parse_filter_values", "placeholder_strings", "placeholder_numbers", "placeholder_number",
           "MAX_VALUE_LENGTH"]

#: The service's limit on one filterValues entry, enforced here so that every surface (the
#: library, batch lines, the server) refuses a huge value before parsing it.
MAX_VALUE_LENGTH = 1000


def _scan_values(raw: str, allow_numbers: bool) -> tuple:
    """Items of a filterValues string; raises ValueError (without the placeholder name)."""
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    if len(raw) > MAX_VALUE_LENGTH:
        raise ValueError(f"a filter value has at most {MAX_VALUE_LENGTH} characters, got {len(raw)}")
    n = len(raw)
    i = 0
    out = []

    def error(position, expected, found):
        return ValueError(f"expected {expected} at position {position}, found {found}")

    while True:
        while i < n and raw[i] in WHITESPACE:
            i += 1
        if i < n and raw[i] == '"':
            value, i = scan_string(raw, i, error)
            out.append(value)
        else:
            j = scan_number(raw, i) if allow_numbers and i < n else -1
            if j < 0:
                found = "end of value" if i >= n else repr(raw[i])
                expected = "a quoted string or a number" if allow_numbers else "a quoted string"
                raise error(i, expected, found)
            out.append(raw[i:j])
            i = j
        while i < n and raw[i] in WHITESPACE:
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


def placeholder_strings(filter_values: Mapping, name: str) -> tuple:
    """The strings given for ``$name`` (``ValueError`` naming it when malformed)."""
    try:
        return _cached_values(filter_values[name], False)
    except ValueError as exc:
        raise ValueError(f"filter value for placeholder ${name} is malformed: {exc}") from None


def placeholder_numbers(filter_values: Mapping, name: str) -> list:
    """The numbers given for ``$name`` (quoted or bare); ``ValueError`` naming it otherwise."""
    try:
        items = _cached_values(filter_values[name], True)
    except ValueError as exc:
        raise ValueError(f"filter value for placeholder ${name} is malformed: {exc}") from None
    out = []
    for item in items:
        x = parse_number(item)
        if x is None:
            raise ValueError(f"filter value for placeholder ${name} must be numeric, got {item!r}")
        out.append(x)
    return out


def placeholder_number(filter_values: Mapping, name: str) -> float:
    """The single number given for ``$name`` (a comparison operand)."""
    nums = placeholder_numbers(filter_values, name)
    if len(nums) != 1:
        raise ValueError(f"filter value for placeholder ${name} must be exactly one number, "
                         f"got {len(nums)} values")
    return nums[0]
