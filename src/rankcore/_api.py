"""Public scoring API: ``ItemTable``, ``rank``, ``rank_batch``, ``score``, ``score_batch``.

This layer does every conversion visibly (``np.ascontiguousarray`` to float32/int64, once) and
the checks that need Python types; the backends receive exactly-typed, C-contiguous arrays and
validate sizes and candidate ranges themselves before touching memory. A single call is a batch of
one: every function ends in the same backend entry point (``score`` or ``rank``).
"""
from __future__ import annotations

import mmap

import numpy as np

from . import _backend, _reference

__all__ = [
    "ItemTable",
    "Ranking",
    "BatchRanking",
    "Scores",
    "BatchScores",
    "rank",
    "rank_batch",
    "score",
    "score_batch",
]

_ALIGN = 64
_PAD = 16  # floats: rows are zero-padded to a multiple of 16 float32 (64 bytes)
_HUGE = 4 << 20  # tables from this size on live in their own mapping with transparent huge pages


def _aligned_zeros(rows: int, cols: int) -> np.ndarray:
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
        padded = -(-d // _PAD) * _PAD
        data = _aligned_zeros(n, padded)
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
        if n == 0 or dim < 1 or padded != -(-dim // _PAD) * _PAD:
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


def _request_index(offsets: np.ndarray, i) -> tuple:
    """``(i, lo, hi)``: request ``i`` (negative counts from the end) and its CSR bounds."""
    n = int(offsets.shape[0] - 1)
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"request {i} out of range for a batch of {n}")
    return i, int(offsets[i]), int(offsets[i + 1])


class Ranking:
    """Ranked candidates of one request, best first.

    Attributes
    ----------
    positions : ndarray of int64
        Indices into the request's candidate list.
    items : ndarray of int64
        Item rows, ``candidates[positions]``.
    scores : ndarray of float32
        Softmax probabilities over all the request's candidates (also when ``k`` cut the list).
    logits : ndarray of float32
        ``dot(table[item], user) + bias[item]``.
    """

    __slots__ = ("positions", "items", "scores", "logits")

    def __init__(self, positions, items, scores, logits):
        self.positions = positions
        self.items = items
        self.scores = scores
        self.logits = logits

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def __repr__(self) -> str:
        return f"Ranking(items={self.items.tolist()!r}, scores={self.scores.tolist()!r})"


class BatchRanking:
    """Rankings of a batch: flat arrays with CSR ``offsets``; ``result[i]`` is request i's Ranking."""

    __slots__ = ("positions", "items", "scores", "logits", "offsets")

    def __init__(self, positions, items, scores, logits, offsets):
        self.positions = positions
        self.items = items
        self.scores = scores
        self.logits = logits
        self.offsets = offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> Ranking:
        _, lo, hi = _request_index(self.offsets, i)
        return Ranking(self.positions[lo:hi], self.items[lo:hi], self.scores[lo:hi], self.logits[lo:hi])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"BatchRanking(requests={len(self)}, items={self.items.shape[0]})"


class Scores:
    """Probabilities and logits of one request in input order."""

    __slots__ = ("scores", "logits")

    def __init__(self, scores, logits):
        self.scores = scores
        self.logits = logits

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return f"Scores(scores={self.scores.tolist()!r})"


class BatchScores:
    """Scores of a batch in input order: flat (or (B, K) for padded input) with ``offsets``."""

    __slots__ = ("scores", "logits", "offsets")

    def __init__(self, scores, logits, offsets):
        self.scores = scores
        self.logits = logits
        self.offsets = offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> Scores:
        i, lo, hi = _request_index(self.offsets, i)
        if self.scores.ndim == 2:
            return Scores(self.scores[i], self.logits[i])
        return Scores(self.scores[lo:hi], self.logits[lo:hi])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


# --------------------------------------------------------------------------- conversions

def _check_table(table) -> ItemTable:
    if not isinstance(table, ItemTable):
        raise TypeError(f"table must be a rankcore.ItemTable, got {type(table).__name__}")
    return table


# The single-call fast paths (see rank and score): only with the native backend, when RANKCORE_BACKEND is
# unset and the environment is CPython's os.environ (whose bytes mapping is read directly).
_rank_one = getattr(_backend._core, "rank_one", None) if _backend.HAS_CPP else None
_score_one = getattr(_backend._core, "score_one", None) if _backend.HAS_CPP else None
_ENV_DATA = _backend._ENV_DATA
_ENV_KEY = getattr(_backend, "_ENV_KEY", None)
if _ENV_DATA is None:  # pragma: no cover - not CPython's os.environ
    _rank_one = _score_one = None

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


def _users(users, table: ItemTable, ndim: int) -> np.ndarray:
    """(B, d) C-contiguous float32 view or copy of the user vector(s); shapes checked.

    Finiteness is checked by the caller (``_reference.check_users``) unless the backend checks it
    itself (its ``CHECKS_USERS``).
    """
    u = users
    if not (type(u) is np.ndarray and u.dtype is _F32 and u.flags.c_contiguous):
        u = np.asarray(u)
        if u.dtype.kind not in "fiu":
            raise TypeError(f"user vectors must be real numbers, got dtype {u.dtype}")
        if u.dtype != _F32 or not u.flags.c_contiguous:
            with np.errstate(over="ignore"):
                u = np.ascontiguousarray(u, dtype=np.float32)
    if u.ndim != ndim or u.shape[-1] != table._dim:
        want = "(d,)" if ndim == 1 else "(B, d)"
        raise ValueError(f"user vectors must have shape {want} with d={table._dim}, got {u.shape}")
    return u.reshape(-1, table._dim) if ndim == 1 else u


def _candidates(candidates, ndim=None) -> np.ndarray:
    if (type(candidates) is np.ndarray and candidates.dtype is _I64 and candidates.flags.c_contiguous
            and (ndim is None or candidates.ndim == ndim)):
        return candidates
    c = np.asarray(candidates)
    if c.dtype.kind not in "iu":
        if c.size == 0 and c.dtype.kind in "fO":
            c = c.astype(np.int64)
        else:
            raise TypeError(f"candidates must be integer row indices, got dtype {c.dtype}")
    if c.dtype == np.uint64 and c.size and int(c.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"candidate {int(c.max())} out of range")
    if ndim is not None and c.ndim != ndim:
        raise ValueError(f"candidates must be {ndim}-D, got shape {c.shape}")
    return np.ascontiguousarray(c, dtype=np.int64)


def _k(k) -> int:
    if k is None:
        return -1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int or None, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return int(k)


def _threads(threads) -> int:
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return int(threads)


def _batch_candidates(candidates, offsets, n_users: int):
    """(flat int64 candidates, int64 offsets, padded) from the 2-D or CSR form."""
    c = _candidates(candidates)
    if c.ndim == 2:
        if offsets is not None:
            raise ValueError("offsets must be None when candidates is 2-D (B, K) with -1 padding")
        if c.shape[0] != n_users:
            raise ValueError(f"candidates has {c.shape[0]} rows but users has {n_users}")
        flat = c.reshape(-1)
        return flat, np.arange(n_users + 1, dtype=np.int64) * c.shape[1], True, c.shape
    if c.ndim != 1:
        raise ValueError(f"candidates must be 2-D (B, K) or flat (total,) with offsets, got shape {c.shape}")
    if offsets is None:
        raise ValueError("flat candidates need CSR offsets of shape (B+1,)")
    o = np.asarray(offsets)
    if o.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {o.dtype}")
    o = np.ascontiguousarray(o, dtype=np.int64)
    if o.ndim != 1 or o.shape[0] != n_users + 1:
        raise ValueError(f"offsets must have shape ({n_users + 1},), got {o.shape}")
    return c, o, False, None


# --------------------------------------------------------------------------- public functions

def rank(user, table: ItemTable, candidates, *, k=None, backend=None) -> Ranking:
    """Rank candidate items for one user, best first.

    Parameters
    ----------
    user : array_like, shape (d,)
        User vector.
    table : ItemTable
    candidates : array_like of int, shape (K,)
        Item rows to rank; each in [0, N).
    k : int, optional
        Keep only the best ``k`` (their scores stay probabilities over all K).
    backend : {"cpp", "numba", "numpy"}, optional

    Returns
    -------
    Ranking
    """
    if (_rank_one is not None and type(table) is ItemTable
            and (_ENV_KEY not in _ENV_DATA if backend is None else backend == "cpp")):
        # Native fast path: inputs already exact (float32 user, int64 candidates) are ranked in
        # one native call; anything else returns None and takes the general path below.
        r = _rank_one(user, table._data, table._bias, table._dim, candidates, k, Ranking)
        if r is not None:
            return r
    if type(table) is not ItemTable:
        _check_table(table)
    u = _users(user, table, 1)
    c = _candidates(candidates, 1)
    impl = _backend.get_backend(backend)
    kk = _k(k)
    if impl is _backend._core and _rank_one is not None:  # converted: now the one-call path takes it
        r = _rank_one(u[0], table._data, table._bias, table._dim, c, None if kk < 0 else kk, Ranking)
        if r is not None:
            return r
    if not impl.CHECKS_USERS:
        _reference.check_users(u)
    p, it, s, lg, _ = impl.rank(u, table._data, table._bias, table._dim, c, None, False, kk, 1)
    return Ranking(p, it, s, lg)


def score(user, table: ItemTable, candidates, *, backend=None) -> Scores:
    """Softmax probabilities and logits of one user's candidates, in input order."""
    if (_score_one is not None and type(table) is ItemTable
            and (_ENV_KEY not in _ENV_DATA if backend is None else backend == "cpp")):
        r = _score_one(user, table._data, table._bias, table._dim, candidates, Scores)
        if r is not None:
            return r
    _check_table(table)
    u = _users(user, table, 1)
    c = _candidates(candidates, 1)
    impl = _backend.get_backend(backend)
    if impl is _backend._core and _score_one is not None:  # converted: now the one-call path takes it
        r = _score_one(u[0], table._data, table._bias, table._dim, c, Scores)
        if r is not None:
            return r
    if not impl.CHECKS_USERS:
        _reference.check_users(u)
    s, lg = impl.score(u, table._data, table._bias, table._dim, c, None, False, 1)
    return Scores(s, lg)


def rank_batch(users, table: ItemTable, candidates, offsets=None, *, k=None, backend=None,
               threads=None) -> BatchRanking:
    """Rank many requests in one call, on several threads with the GIL released.

    Parameters
    ----------
    users : array_like, shape (B, d)
    table : ItemTable
    candidates : array_like of int
        Either (B, K) with ``-1`` as padding, or flat (total,) with CSR ``offsets``.
    offsets : array_like of int, shape (B+1,), optional
        Request i's candidates are ``candidates[offsets[i]:offsets[i+1]]``.
    k, backend : as in :func:`rank`
    threads : int, optional
        Worker threads (default: all cores).

    Returns
    -------
    BatchRanking
        ``positions`` index the request's own list (columns in the 2-D form).
    """
    _check_table(table)
    u = _users(users, table, 2)
    c, o, padded, _ = _batch_candidates(candidates, offsets, u.shape[0])
    impl = _backend.get_backend(backend)
    if not impl.CHECKS_USERS:
        _reference.check_users(u)
    p, it, s, lg, oo = impl.rank(u, table._data, table._bias, table._dim, c, o, padded, _k(k),
                                 _threads(threads))
    return BatchRanking(p, it, s, lg, oo)


def score_batch(users, table: ItemTable, candidates, offsets=None, *, backend=None,
                threads=None) -> BatchScores:
    """Probabilities and logits of many requests in input order.

    For (B, K) padded input the results are (B, K) arrays where padding has score 0 and logit
    ``-inf``; for the CSR form they are flat, with the same ``offsets``.
    """
    _check_table(table)
    u = _users(users, table, 2)
    c, o, padded, shape = _batch_candidates(candidates, offsets, u.shape[0])
    impl = _backend.get_backend(backend)
    if not impl.CHECKS_USERS:
        _reference.check_users(u)
    s, lg = impl.score(u, table._data, table._bias, table._dim, c, o, padded, _threads(threads))
    if shape is not None:
        s = s.reshape(shape)
        lg = lg.reshape(shape)
    return BatchScores(s, lg, o)
