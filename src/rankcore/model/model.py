"""Model artifacts: string IDs, embeddings, context tables, metadata and histories, saved as a directory.

A :class:`Model` holds everything GetPersonalizedRanking needs to answer in-process:

* item IDs (str, at least one item) and the item table (``rankcore.ItemTable``: padded float32 embeddings, optional bias);
* user IDs and user embeddings float32 (n_users, dim), and a cold-start user vector float32 (dim,)
  (default: the mean user vector) for users the model does not know;
* context tables: field (upper case, e.g. ``DEVICE``) -> value (str) -> vector float32 (dim,),
  added to the user vector when a request carries that context;
* item and user metadata columns (``rankcore._columns``), keyed by upper-case column name;
* per-user interaction histories (item row, event type, timestamp) for interaction filters.

Directory format (version 1)
----------------------------
``manifest.json``::

    {"format": "rankcore-model", "version": 1,
     "dim": 64, "padded_dim": 64, "n_items": N, "n_users": U, "has_item_bias": false,
     "context": {"DEVICE": {"n_values": 3}},
     "item_columns": {"GENRE": {"kind": "multi_categorical", "categories": [...]}, ...},
     "user_columns": {"AGE": {"kind": "numeric"}},
     "event_types": ["click", "purchase"],
     "training": {"algorithm": "als", "logit_scale": 3.2, "regularization": 0.01, ...},
     "files": {"item_embeddings.npy": {"shape": [N, 64], "dtype": "<f4", "bytes": 512000128,
                                       "sha256": "..."}, ...}}

Arrays, one ``.npy`` file each (NumPy format, little-endian, C order):

=================================  ==========  =================================================
file                               dtype       shape / meaning
=================================  ==========  =================================================
item_ids.bytes.npy                 uint8       (nbytes,) UTF-8 IDs concatenated
item_ids.offsets.npy               int64       (N + 1,) ID ``i`` is ``bytes[off[i]:off[i+1]]``
item_embeddings.npy                float32     (N, padded_dim), padded_dim % 16 == 0, zero pad
item_bias.npy                      float32     (N,) only when ``has_item_bias``
user_ids.bytes.npy / .offsets.npy  uint8/int64 user IDs, as for items
user_embeddings.npy                float32     (U, dim)
cold_start.npy                     float32     (dim,)
context.<FIELD>.ids.bytes.npy ...  uint8/int64 the field's values, as for items
context.<FIELD>.vectors.npy        float32     (n_values, dim)
item_columns.<NAME>.<part>.npy     per kind    categorical: codes int32 (N,);
                                               multi_categorical: offsets int64 (N + 1,),
                                               codes int32; numeric: values float64 (N,)
user_columns.<NAME>.<part>.npy     per kind    as item columns, with U rows
history.offsets.npy                int64       (U + 1,) CSR over users
history.items.npy                  int64       (nnz,) item rows, per user sorted by timestamp
history.event_codes.npy            int16       (nnz,) index into manifest ``event_types``
history.timestamps.npy             float64     (nnz,) epoch seconds
=================================  ==========  =================================================

The ``.npy`` data offset is a multiple of 64 bytes, so ``np.load(mmap_mode="r")`` gives an aligned
buffer that ``ItemTable.from_padded`` wraps without a copy: opening a 2M x 64 model reads the
manifest, the small arrays and the ID blob, never the whole item table. IDs are stored as a blob and
indexed natively, so no per-ID Python ``str`` is created at load.

``training`` (optional, omitted when empty) is ``Model.training``: how the model was made.

``load_model`` checks the format name and version, every file's presence, size (a truncated file
fails before it is mapped), dtype and shape, the ID blobs (well-formed, no duplicates), CSR offsets,
index ranges, and that the small float arrays (user embeddings, cold start, bias, context vectors)
are finite. Every failure raises :class:`ModelFormatError` (a ``ValueError``) naming the file. The
item table itself is scanned only with ``verify=True`` (finiteness and SHA-256 of every file); the
kernel raises ``ValueError`` on a non-finite logit, so an unverified corrupt table cannot yield NaN
scores. Files are written to a temporary name and renamed, and the manifest last, so a save that
fails midway never leaves a directory that loads.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..core import ItemTable
from ..errors import ModelFormatError
from .columns import (CategoricalColumn, MultiCategoricalColumn, NumericColumn, column_from_arrays,
                       column_from_values)
from .foldin import fold_in as _fold_in
from .ids import IdSequence, check_blob, encode_blob, id_index_from_blob, make_id_index

__all__ = ["Model", "load_model", "ModelFormatError", "FORMAT_NAME", "FORMAT_VERSION",
           "RECENT_INTERACTIONS_PER_TYPE"]

FORMAT_NAME = "rankcore-model"
FORMAT_VERSION = 1
#: Interaction filters see this many most recent interactions per event type (Personalize).
RECENT_INTERACTIONS_PER_TYPE = 100

_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,150}")
_COLUMN_TYPES = (CategoricalColumn, MultiCategoricalColumn, NumericColumn)


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


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{what} name {name!r} must be 1-150 characters of [A-Za-z0-9_]")
    return name.upper()


def _is_index(obj) -> bool:
    return hasattr(obj, "lookup") and hasattr(obj, "id_at") and hasattr(obj, "blob")


def _str_ids(ids: list, what: str) -> list:
    """IDs as str: integers (not bool) become their decimal string, anything else non-str is refused."""
    out = ids
    for i, v in enumerate(ids):
        if isinstance(v, str):
            continue
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            if out is ids:
                out = list(ids)
            out[i] = str(int(v))
            continue
        raise TypeError(f"{what} must be str (integers are converted with str()), got "
                        f"{type(v).__name__} {v!r} at position {i}; convert them, e.g. "
                        "[str(x) for x in ids]")
    return out


def _as_index(ids, what: str):
    if _is_index(ids):
        return ids
    if isinstance(ids, IdSequence):
        return ids._index
    if hasattr(ids, "tolist"):  # pandas Series/Index, NumPy array of str or integers
        ids = ids.tolist()
    try:
        return make_id_index(_str_ids(list(ids), what))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _frame_in_id_order(frame, index, what: str) -> np.ndarray:
    """An embeddings DataFrame's rows reordered to ``index``: its index must hold exactly the IDs."""
    labels = _str_ids(frame.index.tolist(), f"{what} DataFrame index")
    rows = index.lookup(labels)
    if len(labels) != len(index) or (rows < 0).any() or len(np.unique(rows)) != len(rows):
        raise ValueError(f"{what} is a DataFrame whose index is not the {len(index)} IDs (first "
                         f"labels {labels[:3]!r}); set the IDs as its index "
                         "(frame.set_index('ITEM_ID')) or pass frame.to_numpy() to take rows in order")
    values = frame.to_numpy(dtype=np.float32)
    out = np.empty_like(values)
    out[rows] = values
    return out


def _finite_or_raise(arr: np.ndarray, what: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinity")


def _float32_2d(arr, what: str, rows: int | None, dim: int | None) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if rows is not None and a.shape[0] != rows:
        raise ValueError(f"{what} has {a.shape[0]} rows, expected {rows}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{what} has dimension {a.shape[1]}, expected {dim}")
    _finite_or_raise(a, what)
    return a


class Model:
    """A ranking model addressed by string IDs (see the module docstring for the parts).

    Build one with :meth:`from_arrays` or :func:`load_model`; the constructor takes already
    validated parts and is mostly internal.
    """

    def __init__(self, *, item_index, item_table, user_index, user_embeddings: np.ndarray,
                 cold_start: np.ndarray, context: Mapping[str, ContextTable] | None = None,
                 item_columns: Mapping[str, Any] | None = None,
                 user_columns: Mapping[str, Any] | None = None, history: History | None = None,
                 training: Mapping[str, Any] | None = None):
        n_items, dim = int(item_table.n_items), int(item_table.dim)
        if len(item_index) != n_items:
            raise ValueError(f"{len(item_index)} item IDs for {n_items} item embeddings")
        n_users = len(user_index)
        if user_embeddings.shape != (n_users, dim) or user_embeddings.dtype != np.float32:
            raise ValueError(f"user embeddings must be float32 ({n_users}, {dim}), "
                             f"got {user_embeddings.dtype} {user_embeddings.shape}")
        if cold_start.shape != (dim,) or cold_start.dtype != np.float32:
            raise ValueError(f"cold-start vector must be float32 ({dim},), got {cold_start.shape}")
        self.item_index = item_index
        self.item_table = item_table
        self.user_index = user_index
        self.user_embeddings = user_embeddings
        self.cold_start = cold_start
        self.context: dict = {}
        for field, table in (context or {}).items():
            if table.vectors.shape != (len(table.index), dim):
                raise ValueError(f"context {field!r}: vectors must be ({len(table.index)}, {dim})")
            self.context[_check_name(field, "context field")] = table
        self.item_columns: dict = {}
        for name, col in (item_columns or {}).items():
            if len(col) != n_items:
                raise ValueError(f"item column {name!r} has {len(col)} rows, expected {n_items}")
            self.item_columns[_check_name(name, "item column")] = col
        self.user_columns: dict = {}
        for name, col in (user_columns or {}).items():
            if len(col) != n_users:
                raise ValueError(f"user column {name!r} has {len(col)} rows, expected {n_users}")
            self.user_columns[_check_name(name, "user column")] = col
        self.history = history if history is not None else History.empty(n_users)
        if self.history.offsets.shape != (n_users + 1,):
            raise ValueError("history offsets must have n_users + 1 entries")
        #: How the model was made (JSON-serialisable, saved in the manifest): ``algorithm``,
        #: ``params``, row counts, data checksum, ``logit_scale``, ``regularization``, ``alpha``.
        self.training: dict = dict(training or {})

    # ----------------------------------------------------------------- properties
    @property
    def n_items(self) -> int:
        return int(self.item_table.n_items)

    @property
    def n_users(self) -> int:
        return len(self.user_index)

    @property
    def dim(self) -> int:
        return int(self.item_table.dim)

    @property
    def item_bias(self):
        return self.item_table.bias

    @property
    def item_ids(self) -> IdSequence:
        """Item IDs in row order (a lazy ``Sequence[str]``)."""
        return IdSequence(self.item_index)

    @property
    def user_ids(self) -> IdSequence:
        """User IDs in row order (a lazy ``Sequence[str]``)."""
        return IdSequence(self.user_index)

    @property
    def context_fields(self) -> tuple:
        return tuple(self.context)

    def __repr__(self) -> str:
        return (f"Model(n_items={self.n_items}, n_users={self.n_users}, dim={self.dim}, "
                f"context={list(self.context)}, item_columns={list(self.item_columns)}, "
                f"user_columns={list(self.user_columns)})")

    # ----------------------------------------------------------------- lookups
    def item_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of ``item_ids`` as int64 (len,), -1 for unknown IDs."""
        if not isinstance(item_ids, (list, tuple)):
            item_ids = list(item_ids)
        return self.item_index.lookup(item_ids)

    def user_row(self, user_id: str) -> int:
        """Row of ``user_id`` in the user table, -1 when the model does not know the user."""
        return self.user_index.get(user_id) if isinstance(user_id, str) else -1

    def user_vector(self, user_id: str, context: Mapping[str, str] | None = None) -> np.ndarray:
        """float32 (dim,): the user's embedding (cold-start vector if unknown) plus context vectors.

        Raises ``KeyError`` for a context field the model lacks; an unknown value adds nothing.
        """
        row = self.user_row(user_id)
        u = self.user_embeddings[row] if row >= 0 else self.cold_start
        if context:
            u = u.copy()
            for field, value in context.items():
                table = self.context.get(field) or self.context.get(str(field).upper())
                if table is None:
                    raise KeyError(field)
                r = table.index.get(value) if isinstance(value, str) else -1
                if r >= 0:
                    u += table.vectors[r]
        return u

    def recent_interactions(self, user_id: str, limit: int = RECENT_INTERACTIONS_PER_TYPE) -> tuple:
        """The user's most recent interactions: ``(item_rows int64 (m,), event_types list[str])``.

        At most ``limit`` (Personalize: 100) per event type, oldest first; event types are
        lower case. Unknown users have none.
        """
        row = self.user_row(user_id)
        h = self.history
        if row < 0:
            return np.zeros(0, np.int64), []
        a, b = int(h.offsets[row]), int(h.offsets[row + 1])
        items = np.asarray(h.items[a:b])
        codes = np.asarray(h.event_codes[a:b])
        if b - a > limit:
            keep = np.zeros(b - a, dtype=bool)
            for code in np.unique(codes).tolist():
                where = np.flatnonzero(codes == code)
                keep[where[-limit:]] = True
            items, codes = items[keep], codes[keep]
        names = h.event_types
        return items.astype(np.int64, copy=False), [names[c] for c in codes.tolist()]

    def fold_in(self, item_ids: Sequence[str], weights=None) -> np.ndarray:
        """float32 (dim,): a user vector solved from interactions with ``item_ids``.

        The closed-form ALS user solve against the item vectors (as implicit's
        ``recalculate_user``), with ``training["regularization"]`` and ``training["alpha"]``,
        scaled by ``training["logit_scale"]``; see :mod:`rankcore.model.foldin`.
        """
        return _fold_in(self, item_ids, weights)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, item_ids, item_embeddings, *, item_bias=None, user_ids=None,
                    user_embeddings=None, cold_start=None, context=None, item_metadata=None,
                    user_metadata=None, interactions=None, training=None) -> "Model":
        """Build a model from arrays, sequences or pandas DataFrames.

        Parameters
        ----------
        item_ids : sequence of str (or an ID index)
            Item IDs in row order, unique. Integer IDs (Python or NumPy integers) are converted
            to their decimal strings (``7`` becomes ``"7"``), which is how they read in a
            Personalize CSV; requests must then send ``"7"``. Other non-str IDs raise TypeError.
        item_embeddings : float array (n_items, dim), DataFrame, or a ``rankcore.ItemTable``
            Copied into an aligned, padded float32 table (an ``ItemTable`` is used as is). A
            DataFrame is aligned by its index, which must hold exactly the item IDs (any
            order); any other index raises ValueError (use ``.to_numpy()`` for row order).
        item_bias : float array (n_items,), optional
        user_ids : sequence of str, optional
            With ``user_embeddings`` float array (n_users, dim).
        cold_start : float array (dim,), optional
            Vector for unknown users; default the mean user vector (zeros without users).
        context : mapping, optional
            ``{field: {value: vector (dim,)}}`` or ``{field: (values, vectors (n_values, dim))}``.
        item_metadata, user_metadata : mapping or DataFrame, optional
            ``{name: column}`` where a column is a ``rankcore._columns`` column or one value per
            row (str, ``"a|b"`` / list for multi-valued, numbers; ``None`` missing). A DataFrame
            with an ``ITEM_ID`` (``USER_ID``) column is aligned by ID (absent rows are missing);
            without one it is taken in row order. Names are upper-cased.
        interactions : DataFrame or mapping, optional
            Columns ``USER_ID``, ``ITEM_ID``, ``TIMESTAMP`` and optionally ``EVENT_TYPE`` (any
            case; without it every event type is ``""``). Rows whose user or item the model does
            not know are dropped; event types are lower-cased.
        training : mapping, optional
            JSON-serialisable training metadata kept in ``Model.training`` and the manifest.
        """
        item_index = _as_index(item_ids, "item IDs")
        if isinstance(item_embeddings, ItemTable):
            table = item_embeddings
            if item_bias is not None:
                table = ItemTable.from_padded(table.data, table.dim,
                                                 bias=_bias(item_bias, table.n_items))
        else:
            if _is_dataframe(item_embeddings):
                item_embeddings = _frame_in_id_order(item_embeddings, item_index, "item_embeddings")
            emb = _float32_2d(item_embeddings, "item embeddings", len(item_index), None)
            table = ItemTable(emb, None if item_bias is None else _bias(item_bias, emb.shape[0]))
        if table.n_items != len(item_index):
            raise ValueError(f"{len(item_index)} item IDs for {table.n_items} item embeddings")
        dim = int(table.dim)

        if (user_ids is None) != (user_embeddings is None):
            raise ValueError("give user_ids and user_embeddings together")
        user_index = _as_index(user_ids if user_ids is not None else [], "user IDs")
        if user_embeddings is None:
            users = np.zeros((0, dim), np.float32)
        else:
            if _is_dataframe(user_embeddings):
                user_embeddings = _frame_in_id_order(user_embeddings, user_index, "user_embeddings")
            users = _float32_2d(user_embeddings, "user embeddings", len(user_index), dim)
        if cold_start is None:
            cs = (users.mean(axis=0, dtype=np.float64) if len(users) else np.zeros(dim))
            cs = cs.astype(np.float32)
        else:
            cs = np.ascontiguousarray(cold_start, dtype=np.float32)
            if cs.shape != (dim,):
                raise ValueError(f"cold_start must have shape ({dim},), got {cs.shape}")
            _finite_or_raise(cs, "cold_start")

        ctx = {}
        for field, spec in (context or {}).items():
            if isinstance(spec, Mapping):
                values, vecs = list(spec.keys()), [np.asarray(v) for v in spec.values()]
                vecs = np.stack(vecs) if vecs else np.zeros((0, dim))
            else:
                values, vecs = spec
                values = list(values)
            vecs = _float32_2d(vecs, f"context {field!r} vectors", len(values), dim)
            ctx[field] = ContextTable(_as_index(values, f"context {field!r} values"), vecs)

        item_cols = _columns(item_metadata, item_index, "ITEM_ID", "item")
        user_cols = _columns(user_metadata, user_index, "USER_ID", "user")
        history = _history(interactions, item_index, user_index)
        return cls(item_index=item_index, item_table=table, user_index=user_index,
                   user_embeddings=users, cold_start=cs, context=ctx, item_columns=item_cols,
                   user_columns=user_cols, history=history, training=training)

    # ----------------------------------------------------------------- save
    def save(self, path: str | os.PathLike, *, checksums: bool = True) -> None:
        """Write the model directory described in the module docstring (overwrites files).

        ``checksums`` stores a SHA-256 per file for ``load_model(verify=True)``.
        """
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        files: dict = {}

        def put(name: str, arr: np.ndarray) -> None:
            arr = np.ascontiguousarray(arr)
            target = os.path.join(path, name)
            tmp = target + ".tmp"
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, target)  # never truncate a file that may be memory-mapped
            entry = {"shape": list(arr.shape), "dtype": arr.dtype.str,
                     "bytes": os.path.getsize(target)}
            if checksums:
                entry["sha256"] = _sha256(target)
            files[name] = entry

        def put_ids(prefix: str, index) -> None:
            data, offsets = index.blob()
            put(prefix + ".bytes.npy", np.asarray(data, dtype=np.uint8))
            put(prefix + ".offsets.npy", np.asarray(offsets, dtype=np.int64))

        table = self.item_table
        put_ids("item_ids", self.item_index)
        put("item_embeddings.npy", table.data)
        if table.bias is not None:
            put("item_bias.npy", np.asarray(table.bias, dtype=np.float32))
        put_ids("user_ids", self.user_index)
        put("user_embeddings.npy", self.user_embeddings)
        put("cold_start.npy", self.cold_start)
        for field, ct in self.context.items():
            put_ids(f"context.{field}.ids", ct.index)
            put(f"context.{field}.vectors.npy", ct.vectors)
        for group, cols in (("item_columns", self.item_columns), ("user_columns", self.user_columns)):
            for name, col in cols.items():
                for part, arr in col.to_arrays().items():
                    put(f"{group}.{name}.{part}.npy", arr)
        h = self.history
        put("history.offsets.npy", h.offsets)
        put("history.items.npy", h.items)
        put("history.event_codes.npy", h.event_codes)
        put("history.timestamps.npy", h.timestamps)
        manifest = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION,
            "dim": self.dim, "padded_dim": int(table.padded_dim),
            "n_items": self.n_items, "n_users": self.n_users,
            "has_item_bias": table.bias is not None,
            "context": {f: {"n_values": len(ct.index)} for f, ct in self.context.items()},
            "item_columns": {n: c.manifest() for n, c in self.item_columns.items()},
            "user_columns": {n: c.manifest() for n, c in self.user_columns.items()},
            "event_types": list(h.event_types),
            "files": files,
        }
        if self.training:
            manifest["training"] = self.training
        tmp = os.path.join(path, "manifest.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(path, "manifest.json"))


def _bias(bias, n: int) -> np.ndarray:
    b = np.ascontiguousarray(bias, dtype=np.float32)
    if b.shape != (n,):
        raise ValueError(f"item_bias must have shape ({n},), got {b.shape}")
    _finite_or_raise(b, "item_bias")
    return b


def _is_dataframe(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _column_values(values) -> list:
    """Python values with NaN/NA in object data turned into None."""
    out = values.tolist() if hasattr(values, "tolist") else list(values)
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in out]


def _columns(meta, index, id_column: str, what: str) -> dict:
    if meta is None:
        return {}
    n = len(index)
    rows = None
    if _is_dataframe(meta):
        by_upper = {str(c).upper(): c for c in meta.columns}
        if id_column in by_upper:
            rows = index.lookup([str(v) for v in meta[by_upper[id_column]].tolist()])
            keep = rows >= 0
            meta = meta[keep]
            rows = rows[keep]
            if len(np.unique(rows)) != len(rows):
                raise ValueError(f"{what} metadata lists an {id_column} twice")
        items = [(str(c), meta[c]) for c in meta.columns if str(c).upper() != id_column]
    else:
        items = list(meta.items())
    out = {}
    for name, values in items:
        name = _check_name(name, f"{what} column")
        if isinstance(values, _COLUMN_TYPES):
            col = values
        else:
            is_numeric = getattr(getattr(values, "dtype", None), "kind", "O") in "iufb"
            if is_numeric:
                v = np.asarray(values, dtype=np.float64)
                if rows is not None:
                    full = np.full(n, np.nan)
                    full[rows] = v
                    v = full
                col = NumericColumn(name, v)
            else:
                vals = _column_values(values)
                if rows is not None:
                    full = [None] * n
                    for r, v in zip(rows.tolist(), vals):
                        full[r] = v
                    vals = full
                col = column_from_values(name, vals)
        if len(col) != n:
            raise ValueError(f"{what} column {name!r} has {len(col)} rows, expected {n}")
        out[name] = col
    return out


def _history(interactions, item_index, user_index) -> History:
    n_users = len(user_index)
    if interactions is None:
        return History.empty(n_users)
    if _is_dataframe(interactions):
        cols = {str(c).upper(): interactions[c] for c in interactions.columns}
    else:
        cols = {str(k).upper(): v for k, v in interactions.items()}
    missing = {"USER_ID", "ITEM_ID", "TIMESTAMP"} - set(cols)
    if missing:
        raise ValueError(f"interactions lack column(s) {sorted(missing)}")
    users = user_index.lookup([str(v) for v in _column_values(cols["USER_ID"])])
    items = item_index.lookup([str(v) for v in _column_values(cols["ITEM_ID"])])
    if "EVENT_TYPE" in cols:  # optional in Personalize's schema
        events = [str(e).lower() for e in _column_values(cols["EVENT_TYPE"])]
    else:
        events = [""] * len(users)
    ts = np.asarray(cols["TIMESTAMP"], dtype=np.float64)
    if not (len(users) == len(items) == len(events) == len(ts)):
        raise ValueError("interaction columns differ in length")
    _finite_or_raise(ts, "interaction timestamps")
    event_types = tuple(sorted(set(events)))
    if len(event_types) > np.iinfo(np.int16).max:
        raise ValueError("too many distinct event types")
    code_of = {e: i for i, e in enumerate(event_types)}
    codes = np.fromiter((code_of[e] for e in events), dtype=np.int16, count=len(events))
    keep = (users >= 0) & (items >= 0)
    users, items, codes, ts = users[keep], items[keep], codes[keep], ts[keep]
    order = np.lexsort((ts, users))
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=offsets[1:])
    return History(offsets, items[order].astype(np.int64), codes[order], ts[order], event_types)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- load
class _Loader:
    def __init__(self, path: str, manifest: dict, mmap: bool, verify: bool):
        self.path, self.manifest, self.mmap, self.verify = path, manifest, mmap, verify
        self.files = manifest.get("files")
        if not isinstance(self.files, dict):
            raise ModelFormatError(f"{self._p('manifest.json')}: 'files' must be an object")

    def _p(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return name in self.files

    def array(self, name: str, dtype, shape: tuple | None = None) -> np.ndarray:
        """Load ``name`` checking it against the manifest and the expected dtype/shape.

        ``shape`` entries of ``None`` accept any length.
        """
        file = self._p(name)
        entry = self.files.get(name)
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{file}: missing from the manifest")
        if not os.path.isfile(file):
            raise ModelFormatError(f"{file}: file is missing")
        size = os.path.getsize(file)
        if entry.get("bytes") is not None and size != entry["bytes"]:
            raise ModelFormatError(f"{file}: size {size} bytes, manifest says {entry['bytes']} "
                                   "(truncated or corrupt file)")
        if self.verify and entry.get("sha256") and _sha256(file) != entry["sha256"]:
            raise ModelFormatError(f"{file}: SHA-256 checksum mismatch (corrupt file)")
        try:
            arr = np.load(file, mmap_mode="r" if self.mmap else None, allow_pickle=False)
        except Exception as exc:  # ValueError, OSError, EOFError, ... from a damaged header/body
            raise ModelFormatError(f"{file}: cannot read .npy array ({exc})") from None
        if not isinstance(arr, np.ndarray):
            raise ModelFormatError(f"{file}: not a single .npy array")
        want = np.dtype(dtype)
        if arr.dtype != want or entry.get("dtype") != want.str:
            raise ModelFormatError(f"{file}: dtype {arr.dtype.str}, expected {want.str}")
        if list(arr.shape) != list(entry.get("shape", [])):
            raise ModelFormatError(f"{file}: shape {arr.shape} differs from the manifest "
                                   f"{tuple(entry.get('shape', ()))}")
        if shape is not None and (len(shape) != arr.ndim or any(
                s is not None and s != a for s, a in zip(shape, arr.shape))):
            raise ModelFormatError(f"{file}: shape {arr.shape}, expected "
                                   f"{tuple('*' if s is None else s for s in shape)}")
        if not arr.flags.c_contiguous:
            raise ModelFormatError(f"{file}: array is not C-contiguous")
        return arr

    def finite(self, name: str, arr: np.ndarray) -> None:
        if arr.size and not np.isfinite(arr).all():
            raise ModelFormatError(f"{self._p(name)}: contains NaN or infinity")

    def ids(self, prefix: str, n: int | None):
        data = self.array(prefix + ".bytes.npy", np.uint8, (None,))
        offsets = self.array(prefix + ".offsets.npy", np.int64, (None if n is None else n + 1,))
        try:
            check_blob(data, offsets)
            return id_index_from_blob(data, offsets)
        except (ValueError, UnicodeError) as exc:
            raise ModelFormatError(f"{self._p(prefix + '.bytes.npy')}: invalid IDs ({exc})") from None

    def column(self, group: str, name: str, spec: dict, n: int):
        kind = spec.get("kind") if isinstance(spec, dict) else None
        parts = {"categorical": {"codes": (np.int32, (n,))},
                 "multi_categorical": {"offsets": (np.int64, (n + 1,)), "codes": (np.int32, (None,))},
                 "numeric": {"values": (np.float64, (n,))}}.get(kind)
        file0 = self._p(f"{group}.{name}.*.npy")
        if parts is None:
            raise ModelFormatError(f"{file0}: unknown column kind {kind!r}")
        arrays = {p: self.array(f"{group}.{name}.{p}.npy", dt, shp) for p, (dt, shp) in parts.items()}
        try:
            return column_from_arrays(name, spec, arrays)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFormatError(f"{file0}: invalid column ({exc})") from None


def load_model(path: str | os.PathLike, mmap: bool = True, verify: bool = False) -> Model:
    """Open a model directory written by :meth:`Model.save`.

    Parameters
    ----------
    path : directory
    mmap : bool
        Memory-map the arrays (read-only) instead of reading them into memory.
    verify : bool
        Also check every file's SHA-256 and scan the item table for NaN/inf (reads everything).

    Raises
    ------
    ModelFormatError
        (a ``ValueError``) naming the offending file, for any missing, truncated, corrupt or
        inconsistent part, or an unknown format version.
    """
    path = os.fspath(path)
    mpath = os.path.join(path, "manifest.json")
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{mpath}: no model manifest (is {path!r} a model directory?)") from None
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{mpath}: not a {FORMAT_NAME} manifest")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"{mpath}: unsupported format version {version!r} "
                               f"(this rankcore reads version {FORMAT_VERSION})")
    try:
        dim, pdim = int(manifest["dim"]), int(manifest["padded_dim"])
        n_items, n_users = int(manifest["n_items"]), int(manifest["n_users"])
        context_spec = dict(manifest.get("context", {}))
        item_spec = dict(manifest.get("item_columns", {}))
        user_spec = dict(manifest.get("user_columns", {}))
        event_types = tuple(str(e) for e in manifest.get("event_types", []))
        has_bias = bool(manifest.get("has_item_bias", False))
        training = manifest.get("training", {})
        if not isinstance(training, dict):
            raise TypeError("'training' must be an object")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{mpath}: malformed manifest ({exc!r})") from None
    if dim < 1 or pdim < dim or pdim % 16 or n_items < 1 or n_users < 0:
        raise ModelFormatError(f"{mpath}: inconsistent sizes dim={dim} padded_dim={pdim} "
                               f"n_items={n_items} n_users={n_users}")
    for name in list(context_spec) + list(item_spec) + list(user_spec):
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ModelFormatError(f"{mpath}: invalid field or column name {name!r}")

    ld = _Loader(path, manifest, mmap, verify)
    item_index = ld.ids("item_ids", n_items)
    data = ld.array("item_embeddings.npy", np.float32, (n_items, pdim))
    bias = None
    if has_bias:
        bias = ld.array("item_bias.npy", np.float32, (n_items,))
        ld.finite("item_bias.npy", bias)
    try:
        if data.ctypes.data % 64:  # a read (not mapped) array need not be 64-byte aligned: copy once
            table = ItemTable(data[:, :dim], bias=bias)
        else:
            table = ItemTable.from_padded(data, dim, bias=bias, check_finite=verify)
    except ValueError as exc:
        raise ModelFormatError(f"{ld._p('item_embeddings.npy')}: {exc}") from None
    user_index = ld.ids("user_ids", n_users)
    users = ld.array("user_embeddings.npy", np.float32, (n_users, dim))
    ld.finite("user_embeddings.npy", users)
    cold = ld.array("cold_start.npy", np.float32, (dim,))
    ld.finite("cold_start.npy", cold)
    ctx = {}
    for field in context_spec:
        index = ld.ids(f"context.{field}.ids", None)
        vname = f"context.{field}.vectors.npy"
        vecs = ld.array(vname, np.float32, (len(index), dim))
        ld.finite(vname, vecs)
        ctx[field] = ContextTable(index, vecs)
    item_cols = {n: ld.column("item_columns", n, s, n_items) for n, s in item_spec.items()}
    user_cols = {n: ld.column("user_columns", n, s, n_users) for n, s in user_spec.items()}
    h_off = ld.array("history.offsets.npy", np.int64, (n_users + 1,))
    h_items = ld.array("history.items.npy", np.int64, (None,))
    nnz = h_items.shape[0]
    h_codes = ld.array("history.event_codes.npy", np.int16, (nnz,))
    h_ts = ld.array("history.timestamps.npy", np.float64, (nnz,))
    if h_off[0] != 0 or h_off[-1] != nnz or np.any(np.diff(h_off) < 0):
        raise ModelFormatError(f"{ld._p('history.offsets.npy')}: not a valid CSR index")
    if nnz and (h_items.min() < 0 or h_items.max() >= n_items):
        raise ModelFormatError(f"{ld._p('history.items.npy')}: item row out of range")
    if nnz and (h_codes.min() < 0 or h_codes.max() >= len(event_types)):
        raise ModelFormatError(f"{ld._p('history.event_codes.npy')}: event code out of range")
    ld.finite("history.timestamps.npy", h_ts)
    history = History(h_off, h_items, h_codes, h_ts, event_types)
    try:
        return Model(item_index=item_index, item_table=table, user_index=user_index,
                     user_embeddings=users, cold_start=cold, context=ctx, item_columns=item_cols,
                     user_columns=user_cols, history=history, training=training)
    except ValueError as exc:
        raise ModelFormatError(f"{mpath}: {exc}") from None
