"""``ItemTable``: item embeddings (and bias) in the layout the kernels want.

Rows are float32, zero-padded to a multiple of 16 floats (64 bytes) in a 64-byte-aligned buffer;
big tables live in their own mapping advised for transparent huge pages.
"""
from __future__ import annotations

import mmap

import numpy as np

__all__ = ["ItemTable", "aligned_zeros", "PAD"]

_ALIGN = 64
PAD = 16  # floats: rows are zero-padded to a multiple of 16 float32 (64 bytes)
_HUGE = 4 << 20  # tables from this size on live in their own mapping with transparent huge pages


def aligned_zeros(rows: int, cols: int) -> np.ndarray:
    """A zeroed, 64-byte-aligned float32 (rows, cols) array.

    Large tables get an anonymous mapping advised for transparent huge pages: a random row read
    then misses the TLB far less often, which matters for a memory-latency-bound gather.
    """
    nbytes = rows * cols * 4
    if nbytes >= _HUGE:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                buf.madvise(mmap.MADV_HUGEPAGE)
            except OSError:  # pragma: no cover - kernel without THP
                pass
        return np.frombuffer(buf, dtype=np.float32).reshape(rows, cols)
    raw = np.zeros(nbytes + _ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes].view(np.float32).reshape(rows, cols)


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
        row-major float32 buffer whose rows are zero-padded to a multiple of 16 floats.
    bias : array_like, shape (N,), optional
        Per-item bias added to every logit.

    Raises
    ------
    ValueError
        Wrong shape, empty table, or NaN/inf (also values that overflow float32).
    TypeError
        Non-numeric input.

    Notes
    -----
    The object is immutable and safe to share across threads.
    """

    __slots__ = ("_data", "_bias", "_dim", "__weakref__")

    def __init__(self, embeddings, bias=None):
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
        padded = -(-d // PAD) * PAD
        data = aligned_zeros(n, padded)
        data[:, :d] = f32
        data.flags.writeable = False
        self._data = data
        self._dim = int(d)
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
    def from_padded(cls, data, dim: int, bias=None, check_finite: bool = False) -> "ItemTable":
        """Wrap an already padded (N, padded_dim) float32 array without copying it.

        ``data`` must be C-contiguous float32 with ``padded_dim`` the multiple of 16 at or above
        ``dim``, 64-byte aligned (``np.load(path, mmap_mode="r")`` of a ``.npy`` file is). Its
        padding columns are ignored by the kernels as long as they are finite. With
        ``check_finite`` every value is scanned (this reads the whole table).
        """
        if not isinstance(data, np.ndarray) or data.dtype != np.float32 or data.ndim != 2:
            raise TypeError("data must be a 2-D float32 numpy array")
        if not data.flags.c_contiguous:
            raise ValueError("data must be C-contiguous")
        dim = int(dim)
        n, padded = data.shape
        if n == 0 or dim < 1 or padded != -(-dim // PAD) * PAD:
            raise ValueError(f"data of shape {data.shape} is not a padded table of dim {dim}")
        if data.ctypes.data % _ALIGN:
            raise ValueError("data must be 64-byte aligned")
        if check_finite and not np.isfinite(data).all():
            raise ValueError("item table contains NaN or inf")
        self = cls.__new__(cls)
        if data.flags.writeable:
            data = data.view()
            data.flags.writeable = False
        self._data = data
        self._dim = dim
        self._bias = cls._check_bias(bias, n) if bias is not None else None
        return self

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
    def nbytes(self) -> int:
        return int(self._data.nbytes + (0 if self._bias is None else self._bias.nbytes))

    @property
    def data(self) -> np.ndarray:
        """Read-only (N, padded_dim) float32 view of the padded rows."""
        return self._data

    @property
    def embeddings(self) -> np.ndarray:
        """Read-only (N, d) view without the padding."""
        return self._data[:, : self._dim]

    @property
    def bias(self):
        return self._bias

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return (f"ItemTable(n_items={self.n_items}, dim={self.dim}, padded_dim={self.padded_dim}, "
                f"bias={'yes' if self._bias is not None else 'no'})")

