"""String-ID indexes: map external string IDs (items, users, context values) to row numbers.

Two implementations with one API: the native ``IdIndex`` (a C++ hash map over a UTF-8 blob, from
``core.native``) and :class:`PyIdIndex` (a ``dict``), behaviour-identical and tested on their own.
Both offer ``IdIndex(ids)`` (duplicates: ``ValueError``), ``IdIndex.from_blob(data uint8, offsets
int64 (n + 1,))``, ``lookup(ids) -> int64`` (-1 unknown), ``get(id)``, ``id_at(row)``, ``blob()``,
``len`` and ``in``. Model code calls :func:`make_id_index` / :func:`id_index_from_blob`, which
pick the native one when the extension is there. :class:`IdSequence` is the lazy, read-only
``Sequence[str]`` behind ``model.item_ids`` / ``model.user_ids`` (no per-ID ``str`` at load).
"""
from __future__ import annotations

import codecs
from collections.abc import Sequence
from itertools import repeat
from typing import Iterable

import numpy as np

from ..core import native

__all__ = ["PyIdIndex", "make_id_index", "id_index_from_blob", "NativeIdIndex", "IdSequence",
           "encode_blob"]


def encode_blob(ids: Sequence[str]) -> tuple:
    """UTF-8 encode ``ids`` into ``(data uint8 (nbytes,), offsets int64 (n + 1,))``."""
    encoded = []
    for i, s in enumerate(ids):
        if not isinstance(s, str):
            raise TypeError(f"IDs must be str, got {type(s).__name__} at position {i}")
        encoded.append(s.encode("utf-8"))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    if encoded:
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    return data, offsets


def check_blob(data: np.ndarray, offsets: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``(data, offsets)`` is a well-formed blob (dtype, shape, CSR)."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError("ID blob data must be a 1-D uint8 array")
    if not isinstance(offsets, np.ndarray) or offsets.dtype != np.int64 or offsets.ndim != 1 \
            or offsets.shape[0] < 1:
        raise ValueError("ID blob offsets must be a 1-D int64 array of n + 1 entries")
    if offsets[0] != 0 or offsets[-1] != data.shape[0]:
        raise ValueError("ID blob offsets must start at 0 and end at len(data)")
    if offsets.shape[0] > 1 and np.any(offsets[1:] < offsets[:-1]):
        raise ValueError("ID blob offsets must be non-decreasing")


def _check_utf8(data: np.ndarray, offsets: np.ndarray) -> None:
    """Raise ``ValueError`` unless every ID in the blob is valid UTF-8 (no per-ID Python work)."""
    if data.size == 0 or int(data.max()) < 0x80:  # ASCII: always valid
        return
    try:
        codecs.decode(memoryview(data), "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"ID blob is not valid UTF-8: {exc}") from None
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    if np.any((data[starts] & 0xC0) == 0x80):  # a valid whole split inside a character
        raise ValueError("ID blob offsets split a UTF-8 character")


class PyIdIndex:
    """Pure-Python ID index (``dict`` of str -> row), the fallback for ``rankcore._core.IdIndex``.

    Parameters
    ----------
    ids : sequence of str
        The IDs in row order; duplicates raise ``ValueError``.
    """

    __slots__ = ("_ids", "_map", "_blob")

    def __init__(self, ids: Iterable[str] = ()):
        ids = list(ids)
        for i, s in enumerate(ids):
            if not isinstance(s, str):
                raise TypeError(f"IDs must be str, got {type(s).__name__} at position {i}")
        self._init(ids, None)

    def _init(self, ids: list, blob) -> None:
        self._ids = ids
        self._map = dict(zip(ids, range(len(ids))))
        if len(self._map) != len(ids):
            seen = set()
            for s in ids:
                if s in seen:
                    raise ValueError(f"duplicate ID {s!r}")
                seen.add(s)
        self._blob = blob

    @classmethod
    def from_blob(cls, data: np.ndarray, offsets: np.ndarray) -> "PyIdIndex":
        """Build from a UTF-8 blob: ``data`` uint8 (nbytes,), ``offsets`` int64 (n + 1,)."""
        check_blob(data, offsets)
        raw = data.tobytes()
        try:
            if raw.isascii():  # byte offsets are char offsets: decode once, slice
                text = raw.decode("ascii")
                off = offsets.tolist()
                ids = [text[a:b] for a, b in zip(off, off[1:])]
            else:
                off = offsets.tolist()
                ids = [raw[a:b].decode("utf-8") for a, b in zip(off, off[1:])]
        except UnicodeDecodeError as exc:
            raise ValueError(f"ID blob is not valid UTF-8: {exc}") from None
        self = cls.__new__(cls)
        self._init(ids, (data, offsets))
        return self

    def lookup(self, ids) -> np.ndarray:
        """Rows of ``ids`` (list or tuple of str) as int64, -1 for unknown IDs."""
        n = len(ids)
        return np.fromiter(map(self._map.get, ids, repeat(-1, n)), dtype=np.int64, count=n)

    def get(self, id: str) -> int:
        return self._map.get(id, -1)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id) -> bool:
        return id in self._map

    def id_at(self, row: int) -> str:
        if not -len(self._ids) <= row < len(self._ids):
            raise IndexError(f"row {row} out of range for {len(self._ids)} IDs")
        return self._ids[row]

    def blob(self) -> tuple:
        if self._blob is None:
            self._blob = encode_blob(self._ids)
        return self._blob

    def __repr__(self) -> str:
        return f"PyIdIndex(n={len(self)})"


#: The native ``IdIndex`` class, or ``None`` without the extension.
NativeIdIndex = native.function("IdIndex")


def make_id_index(ids: Iterable[str]):
    """An ID index over ``ids`` (native when available, else ``PyIdIndex``)."""
    cls = NativeIdIndex
    ids = ids if isinstance(ids, list) else list(ids)
    if cls is None:
        return PyIdIndex(ids)
    for i, s in enumerate(ids):
        if not isinstance(s, str):
            raise TypeError(f"IDs must be str, got {type(s).__name__} at position {i}")
    return cls(ids)


def id_index_from_blob(data: np.ndarray, offsets: np.ndarray):
    """An ID index over a UTF-8 blob (native when available, else ``PyIdIndex``)."""
    check_blob(data, offsets)
    cls = NativeIdIndex
    if cls is None:
        return PyIdIndex.from_blob(data, offsets)
    data = np.ascontiguousarray(data)
    offsets = np.ascontiguousarray(offsets)
    _check_utf8(data, offsets)
    try:
        return cls.from_blob(data, offsets)
    except UnicodeError as exc:
        raise ValueError(f"ID blob is not valid UTF-8: {exc}") from None


class IdSequence(Sequence):
    """Read-only ``Sequence[str]`` view of an ID index in row order (strings made on access)."""

    __slots__ = ("_index",)

    def __init__(self, index):
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._index.id_at(r) for r in range(*i.indices(len(self._index)))]
        n = len(self._index)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("ID index out of range")
        return self._index.id_at(i)

    def __contains__(self, id) -> bool:
        return isinstance(id, str) and id in self._index

    def index(self, id, start=0, stop=None) -> int:  # type: ignore[override]
        row = self._index.get(id) if isinstance(id, str) else -1
        if row < 0 or row < start or (stop is not None and row >= stop):
            raise ValueError(f"{id!r} is not in the IDs")
        return row

    def __iter__(self):
        id_at = self._index.id_at
        for r in range(len(self._index)):
            yield id_at(r)

    def __eq__(self, other) -> bool:
        if isinstance(other, IdSequence):
            other = list(other)
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n = len(self)
        head = ", ".join(repr(self[i]) for i in range(min(n, 3)))
        return f"IdSequence([{head}{', ...' if n > 3 else ''}], n={n})"
