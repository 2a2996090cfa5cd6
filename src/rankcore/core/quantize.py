"""Storage dtypes of item tables: quantisation rules, padding and dequantisation.

``float32`` (default) stores rows as they are; ``float16`` and ``bfloat16`` round each value to
nearest, ties to even (bfloat16 is kept as its uint16 bit pattern, the upper half of a float32);
``int8`` is symmetric with one float32 scale per row: ``scale = max|row| / 127`` (float32) and
``q = clip(rint(x / scale), -127, 127)`` (round half to even; -128 is never used; an all-zero row
gets scale 0). Dequantised, a value is ``widen(q)`` (exact) times the row's scale for int8. Rows are
zero-padded so that each row is a multiple of 64 bytes. Every backend (C++, numba, NumPy) reads
these layouts; the NumPy reference dequantises them with ``dequantize``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DTYPES", "STORAGE", "padded_dim", "quantize_rows", "dequantize", "dtype_of", "check_dtype"]

#: Storage dtype name -> NumPy dtype of the stored elements.
STORAGE = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.uint16),
    "int8": np.dtype(np.int8),
}
DTYPES = tuple(STORAGE)
_ROW_BYTES = 64


def check_dtype(dtype) -> str:
    """``dtype`` as one of ``DTYPES``, or ValueError/TypeError naming the choices."""
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be one of {', '.join(DTYPES)} (a str), got {type(dtype).__name__}")
    if dtype not in STORAGE:
        raise ValueError(f"unknown item table dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return dtype


def dtype_of(data: np.ndarray) -> str:
    """The storage dtype name of a stored table array (uint16 is bfloat16; int8 needs a scale)."""
    for name, dt in STORAGE.items():
        if data.dtype == dt:
            return name
    raise TypeError(f"item table data must be float32, float16, uint16 (bfloat16) or int8, got {data.dtype}")


def padded_dim(dim: int, dtype: str = "float32") -> int:
    """Elements per stored row: ``dim`` rounded up so a row is a multiple of 64 bytes."""
    per = _ROW_BYTES // STORAGE[dtype].itemsize
    return -(-int(dim) // per) * per


def _bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest, ties to even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def quantize_rows(x: np.ndarray, dtype: str):
    """Finite float32 rows (n, d) -> (stored (n, d) in ``STORAGE[dtype]``, float32 scale (n,) or None).

    Raises ValueError when a value does not fit the dtype (float16 beyond 65504, bfloat16 rounding
    to inf).
    """
    if dtype == "float32":
        return x, None
    if dtype == "float16":
        with np.errstate(over="ignore"):
            q = x.astype(np.float16)
        if not np.isfinite(q).all():
            raise ValueError("embeddings contain values beyond the float16 range (|x| > 65504)")
        return q, None
    if dtype == "bfloat16":
        q = _bf16_round(x)
        if ((q & np.uint16(0x7F80)) == np.uint16(0x7F80)).any():
            raise ValueError("embeddings contain values beyond the bfloat16 range")
        return q, None
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize(data: np.ndarray, row_scale=None, rows=None, dim=None, out_dtype=np.float32) -> np.ndarray:
    """Rows of a stored table as floats: (len(rows), dim), all rows when ``rows`` is None.

    ``data`` is float32, float16, uint16 (bfloat16 bits) or int8 (then ``row_scale`` is required).
    Widening is exact; int8 values are multiplied by their row's scale in ``out_dtype``.
    """
    part = data if rows is None else data[rows]
    if dim is not None:
        part = part[:, :dim]
    if data.dtype == np.uint16:
        wide = (part.astype(np.uint32) << np.uint32(16)).view(np.float32)
        return wide.astype(out_dtype, copy=False)
    wide = part.astype(out_dtype)
    if data.dtype == np.int8:
        if row_scale is None:
            raise ValueError("an int8 table needs its per-row scale")
        s = row_scale if rows is None else row_scale[rows]
        wide *= s.astype(out_dtype)[:, None]
    return wide
