"""Metadata columns: the typed, vectorised storage behind item and user metadata.

Three kinds, each a thin holder of NumPy arrays (saved as ``.npy``, loaded memory-mapped):
``CategoricalColumn`` (``codes`` int32 (n,), -1 missing; ``categories`` tuple of str),
``MultiCategoricalColumn`` (Personalize's ``|``-joined multi-valued fields, CSR: ``offsets``
int64 (n + 1,), ``codes`` int32 (nnz,), ``categories``) and ``NumericColumn`` (``values``
float64 (n,), NaN missing). Every column answers ``as_strings(rows)`` with the strings
GetPersonalizedRanking returns for ``metadataColumns`` (multi-valued joined with ``|``; numbers
without a trailing ``.0`` when integral; ``None`` where the row has no value).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "CategoricalColumn",
    "MultiCategoricalColumn",
    "NumericColumn",
    "column_from_values",
    "column_from_arrays",
    "format_number",
]


def format_number(value: float) -> str:
    """Format a numeric metadata value as Personalize does: ``10`` not ``10.0``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _check_categories(categories: Sequence[str], name: str) -> tuple:
    cats = tuple(categories)
    for c in cats:
        if not isinstance(c, str):
            raise TypeError(f"column {name!r}: categories must be str, got {type(c).__name__}")
    if len(set(cats)) != len(cats):
        raise ValueError(f"column {name!r}: duplicate categories")
    return cats


class _Column:
    kind: str = ""
    name: str

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def code_of(self, value: str) -> int:
        """Code of ``value`` in this column's categories, -1 when absent."""
        return self._lookup.get(value, -1)

    def codes_for(self, values: Iterable[str]) -> np.ndarray:
        """Codes of the given strings that exist in this column (unknown strings are dropped)."""
        codes = [self._lookup[v] for v in values if v in self._lookup]
        return np.asarray(codes, dtype=np.int32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, rows={len(self)})"


class CategoricalColumn(_Column):
    """Single-valued string column (``codes`` int32 with -1 missing, ``categories``)."""

    kind = "categorical"

    def __init__(self, name: str, codes: np.ndarray, categories: Sequence[str]):
        self.name = str(name)
        self.categories = _check_categories(categories, self.name)
        codes = np.asarray(codes)
        if codes.ndim != 1 or codes.dtype != np.int32:
            raise ValueError(f"column {self.name!r}: codes must be a 1-D int32 array")
        if codes.size and (codes.min() < -1 or codes.max() >= len(self.categories)):
            raise ValueError(f"column {self.name!r}: codes out of range of its categories")
        self.codes = codes
        self._lookup = {c: i for i, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def as_strings(self, rows: Sequence[int]) -> list:
        cats = self.categories
        return [cats[c] if c >= 0 else None for c in self.codes[np.asarray(rows, dtype=np.int64)].tolist()]

    def to_arrays(self) -> dict:
        return {"codes": self.codes}

    def manifest(self) -> dict:
        return {"kind": self.kind, "categories": list(self.categories)}


class MultiCategoricalColumn(_Column):
    """Multi-valued string column in CSR form (``offsets``, ``codes``, ``categories``)."""

    kind = "multi_categorical"

    def __init__(self, name: str, offsets: np.ndarray, codes: np.ndarray, categories: Sequence[str]):
        self.name = str(name)
        self.categories = _check_categories(categories, self.name)
        offsets = np.asarray(offsets)
        codes = np.asarray(codes)
        if offsets.ndim != 1 or offsets.dtype != np.int64 or offsets.shape[0] < 1:
            raise ValueError(f"column {self.name!r}: offsets must be a 1-D int64 array of n+1 entries")
        if codes.ndim != 1 or codes.dtype != np.int32:
            raise ValueError(f"column {self.name!r}: codes must be a 1-D int32 array")
        if offsets[0] != 0 or offsets[-1] != codes.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError(f"column {self.name!r}: offsets are not a valid CSR index into codes")
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.categories)):
            raise ValueError(f"column {self.name!r}: codes out of range of its categories")
        self.offsets = offsets
        self.codes = codes
        self._lookup = {c: i for i, c in enumerate(self.categories)}

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def values_of(self, row: int) -> list:
        cats = self.categories
        return [cats[c] for c in self.codes[self.offsets[row]:self.offsets[row + 1]].tolist()]

    def as_strings(self, rows: Sequence[int]) -> list:
        out = []
        for r in np.asarray(rows, dtype=np.int64).tolist():
            vals = self.values_of(r)
            out.append("|".join(vals) if vals else None)
        return out

    def any_in(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Boolean mask over ``rows``: does the row hold any of ``codes``?"""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        total = int(lengths.sum())
        if total == 0 or codes.size == 0:
            return np.zeros(rows.shape[0], dtype=bool)
        owner = np.repeat(np.arange(rows.shape[0]), lengths)
        idx = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(starts, lengths)
        hit = np.isin(self.codes[idx], codes)
        return np.bincount(owner[hit], minlength=rows.shape[0]) > 0

    def to_arrays(self) -> dict:
        return {"offsets": self.offsets, "codes": self.codes}

    def manifest(self) -> dict:
        return {"kind": self.kind, "categories": list(self.categories)}


class NumericColumn(_Column):
    """Numeric column (``values`` float64, NaN = missing)."""

    kind = "numeric"
    _lookup: Mapping[str, int] = {}

    def __init__(self, name: str, values: np.ndarray):
        self.name = str(name)
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype != np.float64:
            raise ValueError(f"column {self.name!r}: values must be a 1-D float64 array")
        if np.isinf(values).any():
            raise ValueError(f"column {self.name!r}: values must be finite (NaN marks a missing value)")
        self.values = values

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def as_strings(self, rows: Sequence[int]) -> list:
        return [None if math.isnan(v) else format_number(v)
                for v in self.values[np.asarray(rows, dtype=np.int64)].tolist()]

    def to_arrays(self) -> dict:
        return {"values": self.values}

    def manifest(self) -> dict:
        return {"kind": self.kind}


def column_from_values(name: str, values: Sequence, kind: str | None = None):
    """Build a column from one Python value per row.

    ``kind`` is ``"categorical"``, ``"multi_categorical"`` or ``"numeric"``; when omitted it is
    inferred: all numbers (or None) -> numeric; any str containing ``|`` or any list/tuple ->
    multi-categorical; else categorical. ``None`` (and NaN for numbers) is a missing value;
    multi-valued rows are given as ``"a|b"`` strings or lists of str.
    """
    values = list(values)
    if kind is None:
        non_null = [v for v in values if v is not None]
        if non_null and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                            for v in non_null):
            kind = "numeric"
        elif any(isinstance(v, (list, tuple)) or (isinstance(v, str) and "|" in v) for v in non_null):
            kind = "multi_categorical"
        else:
            kind = "categorical"
    if kind == "numeric":
        try:
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"column {name!r}: numeric column holds a non-number") from None
        return NumericColumn(name, arr)
    lookup: dict = {}
    if kind == "categorical":
        codes = np.empty(len(values), dtype=np.int32)
        for i, v in enumerate(values):
            if v is None:
                codes[i] = -1
                continue
            if not isinstance(v, str):
                raise TypeError(f"column {name!r}: row {i} holds {type(v).__name__}, expected str")
            codes[i] = lookup.setdefault(v, len(lookup))
        return CategoricalColumn(name, codes, list(lookup))
    if kind == "multi_categorical":
        flat: list = []
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        for i, v in enumerate(values):
            if v is None:
                parts: Sequence = ()
            elif isinstance(v, str):
                parts = [p for p in v.split("|") if p != ""]
            elif isinstance(v, (list, tuple)):
                parts = v
            else:
                raise TypeError(f"column {name!r}: row {i} holds {type(v).__name__}, expected str or list")
            for p in parts:
                if not isinstance(p, str):
                    raise TypeError(f"column {name!r}: row {i} holds a non-str value")
                flat.append(lookup.setdefault(p, len(lookup)))
            offsets[i + 1] = len(flat)
        return MultiCategoricalColumn(name, offsets, np.asarray(flat, dtype=np.int32), list(lookup))
    raise ValueError(f"column {name!r}: unknown kind {kind!r}")


def column_from_arrays(name: str, manifest: Mapping, arrays: Mapping[str, np.ndarray]):
    """Rebuild a column from its ``manifest()`` entry and ``to_arrays()`` arrays."""
    kind = manifest.get("kind")
    if kind == "categorical":
        return CategoricalColumn(name, arrays["codes"], manifest["categories"])
    if kind == "multi_categorical":
        return MultiCategoricalColumn(name, arrays["offsets"], arrays["codes"], manifest["categories"])
    if kind == "numeric":
        return NumericColumn(name, arrays["values"])
    raise ValueError(f"column {name!r}: unknown kind {kind!r}")
