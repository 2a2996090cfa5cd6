"""The :class:`Model`: everything GetPersonalizedRanking needs to answer in-process.

A model holds item IDs and the item table (padded float32 embeddings, optional bias), user IDs and
user embeddings, a cold-start vector for unknown users, context tables (field -> value -> vector
added to the user vector), item and user metadata columns, and per-user interaction histories for
interaction filters. :meth:`Model.from_arrays` builds one from arrays, sequences or DataFrames;
:meth:`Model.save` and :func:`load_model` write and read the directory format of ``storage``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..core import ItemTable
from ..errors import ModelFormatError
from .columns import CategoricalColumn, MultiCategoricalColumn, NumericColumn, column_from_values
from .foldin import fold_in as _fold_in
from .ids import IdSequence, make_id_index
from .parts import ContextTable, History, check_name
from .storage import MANIFEST, read_model, write_model

__all__ = ["Model", "load_model", "RECENT_INTERACTIONS_PER_TYPE"]

#: Interaction filters see this many most recent interactions per event type (Personalize).
RECENT_INTERACTIONS_PER_TYPE = 100

_COLUMN_TYPES = (CategoricalColumn, MultiCategoricalColumn, NumericColumn)


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
    """A ranking model addressed by string IDs (see the module docstring for its parts).

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
        # plain ndarray views: a row of a np.memmap costs several times more to take than one of
        # an ndarray, and user_vector runs once per request
        self._users = np.asarray(user_embeddings).view(np.ndarray)
        self._cold = np.asarray(cold_start).view(np.ndarray)
        self.context: dict = {}
        for field, table in (context or {}).items():
            if table.vectors.shape != (len(table.index), dim):
                raise ValueError(f"context {field!r}: vectors must be ({len(table.index)}, {dim})")
            self.context[check_name(field, "context field")] = table
        self.item_columns: dict = {}
        for name, col in (item_columns or {}).items():
            if len(col) != n_items:
                raise ValueError(f"item column {name!r} has {len(col)} rows, expected {n_items}")
            self.item_columns[check_name(name, "item column")] = col
        self.user_columns: dict = {}
        for name, col in (user_columns or {}).items():
            if len(col) != n_users:
                raise ValueError(f"user column {name!r} has {len(col)} rows, expected {n_users}")
            self.user_columns[check_name(name, "user column")] = col
        self.history = history if history is not None else History.empty(n_users)
        if self.history.offsets.shape != (n_users + 1,):
            raise ValueError("history offsets must have n_users + 1 entries")
        #: How the model was made (JSON-serialisable, saved in the manifest): ``algorithm``,
        #: ``params``, row counts, data checksum, ``logit_scale``, ``regularization``, ``alpha``.
        self.training: dict = dict(training or {})
        #: The directory :func:`load_model` read this model from (None for a model built in memory):
        #: where an ANN index saved beside it is found.
        self.source: str | None = None

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
        u = self._users[row] if row >= 0 else self._cold
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
    @classmethod  # long: half of it is the docstring of every accepted input form
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
            ``{name: column}`` where a column is a ``rankcore.model.columns`` column or one value per
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
                table = ItemTable.from_padded(table.data, table.dim, bias=_bias(item_bias, table.n_items),
                                              dtype=table.dtype, row_scale=table.row_scale)
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
    def save(self, path: str | os.PathLike, *, checksums: bool = True, dtype: str | None = None) -> None:
        """Write the model directory (format in ``rankcore.model.storage``; overwrites files).

        ``checksums`` stores a SHA-256 per file for ``load_model(verify=True)``. ``dtype`` stores
        the item table as "float32", "float16", "bfloat16" or "int8" (None: as held).
        """
        write_model(self, path, checksums=checksums, dtype=dtype)


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
        name = check_name(name, f"{what} column")
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



def load_model(path: str | os.PathLike, mmap: bool = True, verify: bool = False) -> Model:
    """Open a model directory written by :meth:`Model.save`.

    Parameters
    ----------
    path : directory
    mmap : bool
        Memory-map the arrays (read-only) instead of reading them into memory. A mapped model
        sees the files: truncating one kills the process with SIGBUS on the next access, and an
        in-place overwrite changes the answers. ``mmap=False`` reads everything into private
        memory (as much RAM as the files' size), which no later change of the files can reach;
        ``rankcore serve`` loads that way. Replace a model by renaming new files (or a new
        directory) into place, as :meth:`Model.save` does.
    verify : bool
        Also check every file's SHA-256 and scan the item table for NaN/inf (reads everything).

    Raises
    ------
    ModelFormatError
        (a ``ValueError``) naming the offending file, for any missing, truncated, corrupt or
        inconsistent part, or an unknown format version.
    """
    try:
        parts = read_model(path, mmap=mmap, verify=verify)
    except (RecursionError, OverflowError, MemoryError) as exc:  # whatever a hostile file provokes
        raise ModelFormatError(f"{os.path.join(os.fspath(path), MANIFEST)}: unreadable model "
                               f"({type(exc).__name__})") from None
    try:
        model = Model(**parts)
    except ValueError as exc:
        raise ModelFormatError(f"{os.path.join(os.fspath(path), MANIFEST)}: {exc}") from None
    model.source = os.fspath(path)
    return model
