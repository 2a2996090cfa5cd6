"""PutItems and PutUsers metadata laid over a model's metadata columns.

``MetadataOverlay`` keeps, per item (or user) row, the newest metadata received for it and builds
new column objects (the model's columns with those rows replaced) that ``CampaignData`` and
``metadataColumns`` then read; the model's own columns are never written. Property keys are
Personalize's camelCase (``creationTimestamp``) or the schema's names (``CREATION_TIMESTAMP``);
keys the model has no column for are ignored. A record replaces the whole row: a field it does
not carry becomes missing, as a Personalize record with the same ID replaces the earlier one.
Users new to the model get extra rows past the model's (so ``CurrentUser`` conditions see them);
items new to the model have no embedding, rank as unknown and are only kept by ID.
"""
from __future__ import annotations

import json
import math
import re
from typing import Mapping

import numpy as np

from ..errors import InvalidInputException
from ..model.columns import CategoricalColumn, MultiCategoricalColumn, NumericColumn

__all__ = ["MetadataOverlay", "field_name", "parse_properties"]

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def field_name(key: str) -> str:
    """Schema field name of a properties key: ``creationTimestamp`` -> ``CREATION_TIMESTAMP``."""
    return _CAMEL.sub(r"_\1", key).upper()


def parse_properties(text, columns: Mapping, what: str) -> dict:
    """``{FIELD: value}`` of a properties JSON string, for the fields ``columns`` has.

    A numeric field must hold a number (or a numeric string): ``InvalidInputException`` otherwise.
    """
    if text is None:
        return {}
    props = json.loads(text) if isinstance(text, str) else dict(text)
    out = {}
    for key, value in props.items():
        name = field_name(str(key))
        col = columns.get(name)
        if col is None or value is None:
            continue
        if isinstance(col, NumericColumn):
            out[name] = _number(value, f"{what}: {key}")
        elif isinstance(value, (list, tuple)):
            out[name] = [str(v) for v in value]
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


def _number(value, what: str) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise InvalidInputException(f"{what} must be a finite number, got {value!r}")
    return number


class MetadataOverlay:
    """The newest metadata per row of one dataset (items or users) over a model's columns.

    ``base`` maps field name to the model's column; ``n_rows`` is the model's row count.
    ``set(row, fields)`` records a row's metadata; ``columns()`` returns the columns with every
    recorded row applied (new objects, built only when something changed since the last call).
    """

    def __init__(self, base: Mapping, n_rows: int):
        self.base = dict(base)
        self.n_rows = n_rows
        self.rows: dict = {}        # row -> {FIELD: value}
        self.extra: dict = {}       # ID -> row past n_rows (users new to the model)
        self._built = self.base
        self._dirty = False

    def extra_row(self, key: str) -> int:
        """The row of an ID new to the model (assigned on first use)."""
        row = self.extra.get(key)
        if row is None:
            row = self.n_rows + len(self.extra)
            self.extra[key] = row
        return row

    def set(self, row: int, fields: dict) -> None:
        self.rows[row] = fields
        self._dirty = True

    def columns(self) -> dict:
        if self._dirty:
            total = self.n_rows + len(self.extra)
            self._built = {name: _rebuild(col, name, self.rows, total) for name, col in self.base.items()}
            self._dirty = False
        return self._built


def _rebuild(col, name: str, rows: dict, total: int):
    """``col`` extended to ``total`` rows (missing) with the values of ``rows`` written in."""
    n = len(col)
    if isinstance(col, NumericColumn):
        values = np.full(total, np.nan)
        values[:n] = col.values
        for row, fields in rows.items():
            values[row] = fields.get(name, np.nan)
        return NumericColumn(name, values)
    categories = list(col.categories)
    lookup = {c: i for i, c in enumerate(categories)}

    def code(value: str) -> int:
        c = lookup.get(value)
        if c is None:
            c = lookup[value] = len(categories)
            categories.append(value)
        return c

    if isinstance(col, CategoricalColumn):
        codes = np.full(total, -1, dtype=np.int32)
        codes[:n] = col.codes
        for row, fields in rows.items():
            value = fields.get(name)
            if isinstance(value, list):
                value = "|".join(value)
            codes[row] = -1 if value is None else code(value)
        return CategoricalColumn(name, codes, categories)
    return _rebuild_multi(col, name, rows, total, code, categories)


def _rebuild_multi(col: MultiCategoricalColumn, name: str, rows: dict, total: int, code, categories):
    n = len(col)
    new = {}
    for row, fields in rows.items():
        value = fields.get(name)
        parts = value if isinstance(value, list) else ([] if value is None else value.split("|"))
        new[row] = np.array([code(p) for p in parts if p], dtype=np.int32)
    lengths = np.zeros(total, dtype=np.int64)
    lengths[:n] = np.diff(col.offsets)
    replaced = np.zeros(total, dtype=bool)
    for row, codes in new.items():
        lengths[row] = codes.shape[0]
        replaced[row] = True
    offsets = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int32)
    # the rows kept from the model: every old code moves by its row's shift of offset
    old_len = np.diff(col.offsets)
    owner = np.repeat(np.arange(n, dtype=np.int64), old_len)
    keep = ~replaced[owner]
    dest = offsets[owner[keep]] + (np.arange(owner.shape[0]) - col.offsets[owner])[keep]
    out[dest] = col.codes[keep]
    for row, codes in new.items():
        out[offsets[row]:offsets[row + 1]] = codes
    return MultiCategoricalColumn(name, offsets, out, categories)
