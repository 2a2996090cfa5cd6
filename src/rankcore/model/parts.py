"""The plain parts of a ``Model`` that the model class and the directory format share.

:class:`ContextTable` (one context field's value index and vectors), :class:`History` (per-user
interactions in CSR form) and the rule for field and column names (:func:`check_name`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ids import IdSequence

__all__ = ["ContextTable", "History", "NAME_RE", "check_name"]

#: Context field and metadata column names (matched as given, stored upper case).
NAME_RE = re.compile(r"[A-Za-z0-9_]{1,150}")


def check_name(name: str, what: str) -> str:
    """``name`` upper-cased, or ``ValueError`` unless it is 1-150 characters of ``[A-Za-z0-9_]``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"{what} name {name!r} must be 1-150 characters of [A-Za-z0-9_]")
    return name.upper()


@dataclass(frozen=True)
class ContextTable:
    """One context field: ``index`` maps value (str) -> row of ``vectors`` float32 (n_values, dim)."""

    index: Any
    vectors: np.ndarray

    @property
    def values(self) -> IdSequence:
        return IdSequence(self.index)


@dataclass(frozen=True)
class History:
    """Per-user interactions in CSR form, each user's slice sorted by timestamp (ascending).

    ``offsets`` int64 (n_users + 1,), ``items`` int64 (nnz,) item rows, ``event_codes`` int16 (nnz,)
    indexing ``event_types`` (lower-case str), ``timestamps`` float64 (nnz,) epoch seconds.
    """

    offsets: np.ndarray
    items: np.ndarray
    event_codes: np.ndarray
    timestamps: np.ndarray
    event_types: tuple

    @classmethod
    def empty(cls, n_users: int) -> "History":
        return cls(np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int16),
                   np.zeros(0, np.float64), ())
