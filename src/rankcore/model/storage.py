"""The model directory format (version 1): :func:`write_model` and :func:`read_model`.

``manifest.json`` holds ``format`` ("rankcore-model"), ``version``, ``dim``, ``padded_dim``,
``n_items``, ``n_users``, ``has_item_bias``, ``context`` ({FIELD: {n_values}}), ``item_columns``
and ``user_columns`` ({NAME: column manifest}), ``event_types`` and ``files`` ({file: {shape,
dtype, bytes, sha256}}). Every array is one little-endian C-order ``.npy`` file:

* ``item_ids`` / ``user_ids`` / ``context.<FIELD>.ids``: ``.bytes.npy`` uint8 (UTF-8 IDs
  concatenated) and ``.offsets.npy`` int64 (n + 1,);
* ``item_embeddings.npy`` (N, padded_dim) in the storage dtype named by the manifest's
  ``item_dtype`` ("float32" when absent; "float16", "bfloat16" stored as uint16 bits, "int8"),
  rows zero-padded to a multiple of 64 bytes (see ``rankcore.core.quantize``); ``item_scale.npy``
  float32 (N,) for int8; ``item_bias.npy`` float32 (N,) with ``has_item_bias``;
* ``user_embeddings.npy`` float32 (U, dim), ``cold_start.npy`` float32 (dim,),
  ``context.<FIELD>.vectors.npy`` float32 (n_values, dim);
* ``item_columns.<NAME>.<part>.npy`` / ``user_columns...``: categorical ``codes`` int32,
  multi_categorical ``offsets`` int64 + ``codes`` int32, numeric ``values`` float64;
* ``history.offsets.npy`` int64 (U + 1,) CSR over users; ``history.items`` int64,
  ``history.event_codes`` int16 (index into ``event_types``), ``history.timestamps`` float64.

The ``.npy`` data offset is a multiple of 64 bytes, so a memory-mapped item table is wrapped
without a copy. Reading checks every file's presence, size, dtype and shape, the IDs, CSR offsets,
index ranges and the finiteness of the small float arrays; ``verify=True`` adds SHA-256 and the
item table. Failures raise ``ModelFormatError`` naming the file. Only regular files are opened
(a FIFO or a device never blocks or floods a load) and the manifest is bounded in size. Writing
renames each file into place and the manifest last, so a save that fails midway never leaves a
directory that loads; a save over an older model then removes the files only the old one listed.

``mmap=False`` reads every array into private memory, so nothing that later happens to the files
(truncation, an in-place overwrite) can reach the loaded model; a memory-mapped model faults
(SIGBUS) if a mapped file is truncated, and shows the new bytes if one is overwritten in place.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat

import numpy as np

from ..core import ItemTable
from ..core import quantize
from ..core.table import aligned_zeros
from ..errors import ModelFormatError
from .columns import column_from_arrays
from .ids import check_blob, id_index_from_blob
from .parts import NAME_RE, ContextTable, History

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "write_model", "read_model"]

FORMAT_NAME = "rankcore-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The largest manifest read: a real one is a few kB; anything bigger is not a model.
MAX_MANIFEST_BYTES = 16 << 20


def open_regular(path: str, limit: int | None = None):
    """Open ``path`` for binary reading if it is a regular file (of at most ``limit`` bytes).

    ``O_NONBLOCK`` keeps the open of a FIFO from waiting for a writer; the type and size come
    from ``fstat`` of the opened descriptor, so a file swapped in between cannot slip through.
    Raises ``ModelFormatError`` (``FileNotFoundError`` when there is nothing at ``path``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFormatError(f"{path}: not a regular file")
        if limit is not None and st.st_size > limit:
            raise ModelFormatError(f"{path}: {st.st_size} bytes, more than the {limit} allowed")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_npy(f, name: str) -> np.ndarray:
    """Read one ``.npy`` array from ``f`` into private memory (float32 2-D tables 64-byte aligned)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if fortran or dtype.hasobject:
        raise ValueError("not a C-order array of plain numbers")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"bad shape {shape}")
    left = os.fstat(f.fileno()).st_size - f.tell()
    if int(np.prod(shape, dtype=object)) * dtype.itemsize != left:
        raise ValueError(f"header shape {shape} does not match the {left} data bytes")
    if dtype == np.float32 and len(shape) == 2:
        arr = aligned_zeros(*shape)  # the item table: aligned, so it is used without another copy
    else:
        arr = np.empty(shape, dtype=dtype)
    view = memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise ValueError(f"file ends after {got} of {len(view)} data bytes")
        got += n
    return arr


def sha256_file(path: str) -> str:
    """The SHA-256 hex digest of a file, read in 4 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- write
class _Writer:
    """Writes arrays into ``path`` one file at a time and records them for the manifest."""

    def __init__(self, path: str, checksums: bool):
        self.path, self.checksums = path, checksums
        self.files: dict = {}

    def put(self, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        target = os.path.join(self.path, name)
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, target)  # never truncate a file that may be memory-mapped
        entry = {"shape": list(arr.shape), "dtype": arr.dtype.str, "bytes": os.path.getsize(target)}
        if self.checksums:
            entry["sha256"] = sha256_file(target)
        self.files[name] = entry

    def put_ids(self, prefix: str, index) -> None:
        data, offsets = index.blob()
        self.put(prefix + ".bytes.npy", np.asarray(data, dtype=np.uint8))
        self.put(prefix + ".offsets.npy", np.asarray(offsets, dtype=np.int64))


def _old_files(path: str) -> set:
    """File names the manifest already in ``path`` lists (plain names only), or an empty set."""
    try:
        with open_regular(os.path.join(path, MANIFEST), MAX_MANIFEST_BYTES) as f:
            files = json.loads(f.read()).get("files")
    except (OSError, ValueError, RecursionError, AttributeError):
        return set()
    if not isinstance(files, dict):
        return set()
    return {n for n in files if isinstance(n, str) and n.endswith(".npy") and os.path.basename(n) == n
            and n not in (os.curdir, os.pardir)}


def write_model(model, path: str | os.PathLike, *, checksums: bool = True, dtype: str | None = None) -> None:
    """Write ``model`` (a ``Model``) as a directory; ``checksums`` stores a SHA-256 per file.

    ``dtype`` stores the item table as "float32", "float16", "bfloat16" or "int8" (None: as it is
    held); a table held compressed is dequantised and rounded again for another dtype.
    Over an existing model, the files its manifest lists that the new model does not have are
    removed once the new manifest is in place; other files in the directory are left alone.
    """
    path = os.fspath(path)
    table = model.item_table
    if dtype is not None and quantize.check_dtype(dtype) != table.dtype:
        table = ItemTable(table.embeddings, table.bias, dtype=dtype)
    os.makedirs(path, exist_ok=True)
    old = _old_files(path)
    w = _Writer(path, checksums)
    w.put_ids("item_ids", model.item_index)
    w.put("item_embeddings.npy", table.data)
    if table.row_scale is not None:
        w.put("item_scale.npy", table.row_scale)
    if table.bias is not None:
        w.put("item_bias.npy", np.asarray(table.bias, dtype=np.float32))
    w.put_ids("user_ids", model.user_index)
    w.put("user_embeddings.npy", model.user_embeddings)
    w.put("cold_start.npy", model.cold_start)
    for field, ct in model.context.items():
        w.put_ids(f"context.{field}.ids", ct.index)
        w.put(f"context.{field}.vectors.npy", ct.vectors)
    for group, cols in (("item_columns", model.item_columns), ("user_columns", model.user_columns)):
        for name, col in cols.items():
            for part, arr in col.to_arrays().items():
                w.put(f"{group}.{name}.{part}.npy", arr)
    h = model.history
    w.put("history.offsets.npy", h.offsets)
    w.put("history.items.npy", h.items)
    w.put("history.event_codes.npy", h.event_codes)
    w.put("history.timestamps.npy", h.timestamps)
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION,
        "dim": model.dim, "padded_dim": int(table.padded_dim), "item_dtype": table.dtype,
        "n_items": model.n_items, "n_users": model.n_users,
        "has_item_bias": table.bias is not None,
        "context": {f: {"n_values": len(ct.index)} for f, ct in model.context.items()},
        "item_columns": {n: c.manifest() for n, c in model.item_columns.items()},
        "user_columns": {n: c.manifest() for n, c in model.user_columns.items()},
        "event_types": list(h.event_types),
        "files": w.files,
    }
    if model.training:
        manifest["training"] = model.training
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(path, MANIFEST))
    for name in sorted(old - set(w.files)):
        try:
            os.remove(os.path.join(path, name))
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- read
class _Loader:
    """Reads the arrays of one directory, checking each against the manifest."""

    def __init__(self, path: str, manifest: dict, mmap: bool, verify: bool):
        self.path, self.manifest, self.mmap, self.verify = path, manifest, mmap, verify
        self.files = manifest.get("files")
        if not isinstance(self.files, dict):
            raise ModelFormatError(f"{self.file(MANIFEST)}: 'files' must be an object")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def array(self, name: str, dtype, shape: tuple | None = None) -> np.ndarray:
        """Load ``name`` checking it against the manifest and the expected dtype/shape.

        ``shape`` entries of ``None`` accept any length.
        """
        file = self.file(name)
        entry = self.files.get(name)
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{file}: missing from the manifest")
        want = np.dtype(dtype)
        shape_entry, nbytes = entry.get("shape", []), entry.get("bytes")
        if (entry.get("dtype") != want.str or not isinstance(shape_entry, list)
                or not all(type(n) is int for n in shape_entry)
                or (nbytes is not None and type(nbytes) is not int)):
            raise ModelFormatError(f"{file}: malformed manifest entry (dtype {entry.get('dtype')!r}, "
                                   f"expected {want.str!r}; shape and bytes must be integers)")
        try:
            f = open_regular(file)
        except FileNotFoundError:
            raise ModelFormatError(f"{file}: file is missing") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if nbytes is not None and size != nbytes:
                raise ModelFormatError(f"{file}: size {size} bytes, manifest says {nbytes} "
                                       "(truncated or corrupt file)")
            if self.verify and entry.get("sha256") and sha256_file(file) != entry["sha256"]:
                raise ModelFormatError(f"{file}: SHA-256 checksum mismatch (corrupt file)")
            try:
                arr = (np.load(file, mmap_mode="r", allow_pickle=False) if self.mmap
                       else _read_npy(f, file))
            except Exception as exc:  # ValueError, OSError, EOFError, ... from a damaged header/body
                raise ModelFormatError(f"{file}: cannot read .npy array ({exc})") from None
        if not isinstance(arr, np.ndarray):
            raise ModelFormatError(f"{file}: not a single .npy array")
        if arr.dtype != want:
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

    def check_finite(self, name: str, arr: np.ndarray) -> None:
        if arr.size and not np.isfinite(arr).all():
            raise ModelFormatError(f"{self.file(name)}: contains NaN or infinity")

    def finite_array(self, name: str, dtype, shape: tuple | None = None) -> np.ndarray:
        """:meth:`array`, and ``ModelFormatError`` if it holds NaN or infinity."""
        arr = self.array(name, dtype, shape)
        self.check_finite(name, arr)
        return arr

    def ids(self, prefix: str, n: int | None):
        data = self.array(prefix + ".bytes.npy", np.uint8, (None,))
        offsets = self.array(prefix + ".offsets.npy", np.int64, (None if n is None else n + 1,))
        try:
            check_blob(data, offsets)
            return id_index_from_blob(data, offsets)
        except (ValueError, UnicodeError) as exc:
            raise ModelFormatError(f"{self.file(prefix + '.bytes.npy')}: invalid IDs ({exc})") from None

    def column(self, group: str, name: str, spec: dict, n: int):
        kind = spec.get("kind") if isinstance(spec, dict) else None
        parts = {"categorical": {"codes": (np.int32, (n,))},
                 "multi_categorical": {"offsets": (np.int64, (n + 1,)), "codes": (np.int32, (None,))},
                 "numeric": {"values": (np.float64, (n,))}}.get(kind)
        file0 = self.file(f"{group}.{name}.*.npy")
        if parts is None:
            raise ModelFormatError(f"{file0}: unknown column kind {kind!r}")
        arrays = {p: self.array(f"{group}.{name}.{p}.npy", dt, shp) for p, (dt, shp) in parts.items()}
        try:
            return column_from_arrays(name, spec, arrays)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFormatError(f"{file0}: invalid column ({exc})") from None

    def item_table(self, n_items: int, dim: int, pdim: int, has_bias: bool, dtype: str) -> ItemTable:
        data = self.array("item_embeddings.npy", quantize.STORAGE[dtype], (n_items, pdim))
        bias = self.finite_array("item_bias.npy", np.float32, (n_items,)) if has_bias else None
        scale = self.finite_array("item_scale.npy", np.float32, (n_items,)) if dtype == "int8" else None
        try:
            if data.ctypes.data % 64:  # a read (not mapped) array need not be 64-byte aligned: copy once
                aligned = aligned_zeros(n_items, pdim, data.dtype)
                aligned[:] = data
                data = aligned
            return ItemTable.from_padded(data, dim, bias=bias, check_finite=self.verify, dtype=dtype,
                                         row_scale=scale)
        except ValueError as exc:
            raise ModelFormatError(f"{self.file('item_embeddings.npy')}: {exc}") from None

    def history(self, n_users: int, n_items: int, event_types: tuple) -> History:
        offsets = self.array("history.offsets.npy", np.int64, (n_users + 1,))
        items = self.array("history.items.npy", np.int64, (None,))
        nnz = items.shape[0]
        codes = self.array("history.event_codes.npy", np.int16, (nnz,))
        ts = self.array("history.timestamps.npy", np.float64, (nnz,))
        if offsets[0] != 0 or offsets[-1] != nnz or np.any(np.diff(offsets) < 0):
            raise ModelFormatError(f"{self.file('history.offsets.npy')}: not a valid CSR index")
        if nnz and (items.min() < 0 or items.max() >= n_items):
            raise ModelFormatError(f"{self.file('history.items.npy')}: item row out of range")
        if nnz and (codes.min() < 0 or codes.max() >= len(event_types)):
            raise ModelFormatError(f"{self.file('history.event_codes.npy')}: event code out of range")
        self.check_finite("history.timestamps.npy", ts)
        return History(offsets, items, codes, ts, event_types)


def _read_manifest(path: str) -> dict:
    mpath = os.path.join(path, MANIFEST)
    try:
        with open_regular(mpath, MAX_MANIFEST_BYTES) as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
        if len(text) > MAX_MANIFEST_BYTES:
            raise ModelFormatError(f"{mpath}: more than {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(text.decode("utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{mpath}: no model manifest (is {path!r} a model directory?)") from None
    except RecursionError:
        raise ModelFormatError(f"{mpath}: unreadable manifest (nested too deeply)") from None
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{mpath}: not a {FORMAT_NAME} manifest")
    version = manifest.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelFormatError(f"{mpath}: unsupported format version {version!r} "
                               f"(this rankcore reads version {FORMAT_VERSION})")
    return manifest


def _field(manifest: dict, mpath: str, key: str, kind: type, default=None):
    """``manifest[key]``, which must be exactly of JSON type ``kind`` (``True`` is not an int)."""
    if key not in manifest and default is not None:
        return default
    value = manifest.get(key)
    if type(value) is not kind:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise ModelFormatError(f"{mpath}: malformed manifest: {key!r} must be "
                               f"{'an' if kind is int else 'a'} {kind.__name__} (JSON "
                               f"{_JSON_TYPES[kind]}), got {shown}")
    return value


_JSON_TYPES = {int: "integer", bool: "true/false", dict: "object", list: "array", str: "string"}


def read_model(path: str | os.PathLike, *, mmap: bool = True, verify: bool = False) -> dict:
    """The checked parts of the model in ``path``: the keyword arguments of ``Model(...)``.

    Raises ``ModelFormatError`` naming the file for anything missing, truncated or inconsistent.
    """
    path = os.fspath(path)
    manifest = _read_manifest(path)
    mpath = os.path.join(path, MANIFEST)
    dim, pdim = _field(manifest, mpath, "dim", int), _field(manifest, mpath, "padded_dim", int)
    n_items, n_users = _field(manifest, mpath, "n_items", int), _field(manifest, mpath, "n_users", int)
    context_spec = _field(manifest, mpath, "context", dict, {})
    item_spec = _field(manifest, mpath, "item_columns", dict, {})
    user_spec = _field(manifest, mpath, "user_columns", dict, {})
    event_types = tuple(_field(manifest, mpath, "event_types", list, []))
    has_bias = _field(manifest, mpath, "has_item_bias", bool, False)
    dtype = _field(manifest, mpath, "item_dtype", str, "float32")
    if dtype not in quantize.DTYPES:
        raise ModelFormatError(f"{mpath}: unknown item_dtype {dtype!r} (expected one of "
                               f"{', '.join(quantize.DTYPES)})")
    if not all(isinstance(e, str) for e in event_types):
        raise ModelFormatError(f"{mpath}: 'event_types' must be a list of strings")
    training = _field(manifest, mpath, "training", dict, {})
    if dim < 1 or pdim != quantize.padded_dim(dim, dtype) or n_items < 1 or n_users < 0:
        raise ModelFormatError(f"{mpath}: inconsistent sizes dim={dim} padded_dim={pdim} "
                               f"n_items={n_items} n_users={n_users}")
    for name in list(context_spec) + list(item_spec) + list(user_spec):
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ModelFormatError(f"{mpath}: invalid field or column name {name!r}")

    ld = _Loader(path, manifest, mmap, verify)
    item_index = ld.ids("item_ids", n_items)
    item_table = ld.item_table(n_items, dim, pdim, has_bias, dtype)
    user_index = ld.ids("user_ids", n_users)
    user_embeddings = ld.finite_array("user_embeddings.npy", np.float32, (n_users, dim))
    cold_start = ld.finite_array("cold_start.npy", np.float32, (dim,))
    context = {}
    for field in context_spec:
        index = ld.ids(f"context.{field}.ids", None)
        vectors = ld.finite_array(f"context.{field}.vectors.npy", np.float32, (len(index), dim))
        context[field] = ContextTable(index, vectors)
    item_columns = {n: ld.column("item_columns", n, s, n_items) for n, s in item_spec.items()}
    user_columns = {n: ld.column("user_columns", n, s, n_users) for n, s in user_spec.items()}
    history = ld.history(n_users, n_items, event_types)
    return dict(item_index=item_index, item_table=item_table, user_index=user_index,
                user_embeddings=user_embeddings, cold_start=cold_start, context=context,
                item_columns=item_columns, user_columns=user_columns, history=history,
                training=training)
