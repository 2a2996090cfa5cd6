"""``ItemTable``: item embeddings (and bias) in the layout the kernels want.

Rows are stored as float32 (default), float16, bfloat16 (uint16 bits) or int8 with one float32
scale per row (``core.quantize`` holds the rounding rules), zero-padded so each row is a multiple of
64 bytes, in a 64-byte-aligned buffer; big tables live in their own mapping advised for transparent
huge pages.
"""
from __future__ import annotations

import mmap

import numpy as np

from . import quantize as _q

__all__ = ["ItemTable", "aligned_zeros", "PAD"]

_ALIGN = 64
PAD = 16  # floats: rows are zero-padded to a multiple of 16 float32 (64 bytes)
_HUGE = 4 << 20  # tables from this size on live in their own mapping with transparent huge pages


def aligned_zeros(rows: int, cols: int, dtype=np.float32) -> np.ndarray:
    """A zeroed, 64-byte-aligned (rows, cols) array of ``dtype`` (float32 by default).

    Large tables get an anonymous mapping advised for transparent huge pages: a random row read
    then misses the TLB far less often, which matters for a memory-latency-bound gather.
    """
    dtype = np.dtype(dtype)
    nbytes = rows * cols * dtype.itemsize
    if nbytes >= _HUGE:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                buf.madvise(mmap.MADV_HUGEPAGE)
            except OSError:  # pragma: no cover - kernel without THP
                pass
        return np.frombuffer(buf, dtype=dtype).reshape(rows, cols)
    raw = np.zeros(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(rows, cols)


def _as_float_matrix(x, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    return arr


class ItemTable:
    """Item embeddings (and optional bias) in the layout the kernels want.

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
        Item embedding rows; any real dtype. Copied once into an owned, read-only, 64-byte-aligned,
        row-major buffer of the storage dtype whose rows are zero-padded to a multiple of 64 bytes.
    bias : array_like, shape (N,), optional
        Per-item bias added to every logit (always float32).
    dtype : {"float32", "float16", "bfloat16", "int8"}
        Storage dtype of the rows (see ``rankcore.core.quantize`` for the rounding rules): 2x
        (float16, bfloat16) or 4x (int8, plus 4 bytes of scale per row) fewer bytes per row.

    Raises
    ------
    ValueError
        Wrong shape, empty table, NaN/inf (also values that overflow float32 or the storage dtype),
        or an unknown dtype.
    TypeError
        Non-numeric input.

    Notes
    -----
    The object is immutable and safe to share across threads.
    """

    __slots__ = ("_data", "_bias", "_dim", "_dtype", "_scale", "__weakref__")

    _CHUNK = 1 << 16  # rows quantised per step: bounds the float32 temporaries of a big table

    def __init__(self, embeddings, bias=None, dtype: str = "float32"):
        dtype = _q.check_dtype(dtype)
        emb = _as_float_matrix(embeddings, "embeddings")
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (N, d), got shape {emb.shape}")
        n, d = emb.shape
        if n == 0 or d == 0:
            raise ValueError(f"embeddings must be non-empty, got shape {emb.shape}")
        with np.errstate(over="ignore"):
            f32 = emb.astype(np.float32, copy=False)
        if not np.isfinite(f32).all():
            raise ValueError("embeddings contain NaN or inf (or values beyond float32 range)")
        data = aligned_zeros(n, _q.padded_dim(d, dtype), _q.STORAGE[dtype])
        scale = np.zeros(n, dtype=np.float32) if dtype == "int8" else None
        for start in range(0, n, self._CHUNK):
            stop = min(n, start + self._CHUNK)
            q, s = _q.quantize_rows(f32[start:stop], dtype)
            data[start:stop, :d] = q
            if scale is not None:
                scale[start:stop] = s
        data.flags.writeable = False
        if scale is not None:
            scale.flags.writeable = False
        self._data = data
        self._dim = int(d)
        self._dtype = dtype
        self._scale = scale
        self._bias = self._check_bias(bias, n)

    @staticmethod
    def _check_bias(bias, n: int):
        if bias is None:
            return None
        b = _as_float_matrix(bias, "bias")
        if b.ndim != 1 or b.shape[0] != n:
            raise ValueError(f"bias must have shape ({n},), got {b.shape}")
        with np.errstate(over="ignore"):
            b = np.array(b, dtype=np.float32, copy=True)
        if not np.isfinite(b).all():
            raise ValueError("bias contains NaN or inf (or values beyond float32 range)")
        b.flags.writeable = False
        return b

    @classmethod
    def from_padded(cls, data, dim: int, bias=None, check_finite: bool = False, dtype: str = "float32",
                    row_scale=None) -> "ItemTable":
        """Wrap an already padded (N, padded_dim) array of storage ``dtype`` without copying it.

        ``data`` must be C-contiguous with the NumPy dtype of ``dtype`` (float32, float16, uint16
        for bfloat16, int8), ``padded_dim`` the smallest row of a multiple of 64 bytes holding ``dim``,
        64-byte aligned (``np.load(path, mmap_mode="r")`` of a ``.npy`` file is). Its padding
        columns are ignored by the kernels as long as they are finite. ``row_scale`` (int8 only,
        required there): float32 (N,), finite, non-negative, always checked. With ``check_finite``
        every value is scanned (this reads the whole table).
        """
        dtype = _q.check_dtype(dtype)
        want = _q.STORAGE[dtype]
        if not isinstance(data, np.ndarray) or data.dtype != want or data.ndim != 2:
            raise TypeError(f"data must be a 2-D {want} numpy array for dtype {dtype}")
        if not data.flags.c_contiguous:
            raise ValueError("data must be C-contiguous")
        dim = int(dim)
        n, padded = data.shape
        if n == 0 or dim < 1 or padded != _q.padded_dim(dim, dtype):
            raise ValueError(f"data of shape {data.shape} is not a padded {dtype} table of dim {dim}")
        if data.ctypes.data % _ALIGN:
            raise ValueError("data must be 64-byte aligned")
        scale = cls._check_scale(row_scale, n, dtype)
        if check_finite and not cls._finite(data, dtype):
            raise ValueError("item table contains NaN or inf")
        self = cls.__new__(cls)
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
        self._data = data
        self._dim = dim
        self._dtype = dtype
        self._scale = scale
        self._bias = cls._check_bias(bias, n) if bias is not None else None
        return self

    @staticmethod
    def _finite(data: np.ndarray, dtype: str) -> bool:
        if dtype == "int8":
            return True
        if dtype == "bfloat16":  # exponent bits all ones: inf or NaN
            return not ((data & np.uint16(0x7F80)) == np.uint16(0x7F80)).any()
        return bool(np.isfinite(data).all())

    @staticmethod
    def _check_scale(row_scale, n: int, dtype: str):
        if dtype != "int8":
            if row_scale is not None:
                raise ValueError(f"row_scale is only for int8 tables, got dtype {dtype}")
            return None
        if not isinstance(row_scale, np.ndarray) or row_scale.dtype != np.float32 or row_scale.shape != (n,):
            raise ValueError(f"an int8 table needs row_scale, a float32 array of shape ({n},)")
        if not np.isfinite(row_scale).all() or (row_scale < 0).any():
            raise ValueError("row_scale contains NaN, inf or negative values")
        if not row_scale.flags.c_contiguous or row_scale.ctypes.data % row_scale.itemsize:
            row_scale = np.ascontiguousarray(row_scale)
        if row_scale.flags.writeable:
            row_scale = row_scale.view()
            row_scale.flags.writeable = False
        return row_scale

    @property
    def n_items(self) -> int:
        return int(self._data.shape[0])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def padded_dim(self) -> int:
        return int(self._data.shape[1])

    @property
    def dtype(self) -> str:
        """Storage dtype: "float32", "float16", "bfloat16" or "int8"."""
        return self._dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the stored rows, the int8 scales and the bias."""
        extra = sum(a.nbytes for a in (self._bias, self._scale) if a is not None)
        return int(self._data.nbytes + extra)

    @property
    def data(self) -> np.ndarray:
        """Read-only (N, padded_dim) view of the stored rows (float32, float16, uint16 bits of
        bfloat16, or int8 before the row scale)."""
        return self._data

    @property
    def row_scale(self):
        """Read-only float32 (N,) per-row scale of an int8 table; None for the other dtypes."""
        return self._scale

    @property
    def embeddings(self) -> np.ndarray:
        """(N, d) float32 rows without the padding: a read-only view for float32 tables, a
        dequantised copy (see ``rankcore.core.quantize.dequantize``) for the others."""
        if self._dtype == "float32":
            return self._data[:, : self._dim]
        return _q.dequantize(self._data, self._scale, dim=self._dim)

    @property
    def vectors(self):
        """Rows by index as float32 (``table.vectors[rows]`` -> (len(rows), d)), without
        dequantising the whole table: the unpadded view itself for float32 tables."""
        if self._dtype == "float32":
            return self._data[:, : self._dim]
        return _RowVectors(self)

    @property
    def bias(self):
        return self._bias

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return (f"ItemTable(n_items={self.n_items}, dim={self.dim}, padded_dim={self.padded_dim}, "
                f"dtype={self._dtype}, bias={'yes' if self._bias is not None else 'no'})")


class _RowVectors:
    """``table.vectors`` of a compressed table: ``[rows]`` dequantises only those rows."""

    __slots__ = ("_table",)

    def __init__(self, table: ItemTable):
        self._table = table

    @property
    def shape(self) -> tuple:
        return (self._table.n_items, self._table.dim)

    def __len__(self) -> int:
        return self._table.n_items

    def __getitem__(self, rows) -> np.ndarray:
        t = self._table
        idx = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        out = _q.dequantize(t._data, t._scale, rows=idx, dim=t._dim)
        return out[0] if np.ndim(rows) == 0 else out
