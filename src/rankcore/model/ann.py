"""Approximate catalog-wide top-K with faiss: ``AnnIndex`` (build, search, filters, save, load).

The transform: the logit of item ``i`` for a user vector ``u`` is ``u . e_i + b_i`` (a model's
logit scale is already baked into its user vectors and bias). The index holds the augmented rows
``[e_i, b_i]`` (dimension ``d + 1``) and a query is ``[u, 1]``, so the inner product the index
maximises is exactly the logit. Rows come back with logits recomputed in float64 from the item
table, so every returned logit is exact; the choice of rows and the softmax normaliser (hence
the scores) are approximate.
Kinds (built by :mod:`rankcore.model.ann_build`, which says why): ``ivf`` (``IndexIVFFlat``,
inner product, rows filed by Euclidean distance to k-means centroids, lists probed by inner
product; the default) and ``hnsw`` (``IndexHNSWFlat``, inner product).
Filters, the normaliser estimate and the on-disk sidecar ``ann.json`` are described on
:class:`AnnIndex`. faiss-cpu is the optional extra ``ann`` (imported on first use).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..core import ItemTable, TopK, topk, topk_batch
from ..errors import ModelFormatError
from .ann_build import build_hnsw, build_ivf, default_nlist, default_nprobe, sample_rows
from .ann_build import faiss_module as _faiss
from .ann_store import NORM_SAMPLE, SIDECAR, read_index, save_index

__all__ = ["AnnIndex", "EXACT_BELOW", "KINDS", "SIDECAR", "augment"]

#: Catalog size below which the exact ``topk`` (exact normaliser included) answers a single request
#: faster than a faiss search at recall@25 >= 0.95 plus the normaliser estimate; measured with
#: ``benches/ann_vs_exact.py --crossover`` at d = 64 (exact wins at 20k rows; ivf and hnsw at 50k).
EXACT_BELOW = 30_000
KINDS = ("hnsw", "ivf")
#: An ``allowed`` mask passing at most this share of the catalog is answered exactly over the
#: qualifying rows alone (cheaper than a graph walk that must skip most of what it visits).
GATHER_FRACTION = 1 / 32


def augment(embeddings: np.ndarray, bias) -> np.ndarray:
    """float32 (N, d + 1) rows ``[e_i, b_i]`` (``b_i = 0`` without a bias)."""
    n, d = embeddings.shape
    out = np.empty((n, d + 1), dtype=np.float32)
    out[:, :d] = embeddings
    out[:, d] = 0.0 if bias is None else bias
    return out


def _positive_int(value, what: str, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


class _Threads:
    """Sets faiss's OpenMP thread count for a block and restores it afterwards."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        faiss = _faiss()
        self.before = faiss.omp_get_max_threads()
        if self.threads is not None:
            faiss.omp_set_num_threads(self.threads)

    def __exit__(self, *exc):
        _faiss().omp_set_num_threads(self.before)


class AnnIndex:
    """A faiss index over a model's augmented item rows (see the module docstring).

    Build with :meth:`build`, or read one saved in a model directory with :meth:`load`.

    Filters (:meth:`search_filtered`): no row outside ``allowed`` or inside ``exclude`` is ever
    returned, and ``min(k, qualifying rows)`` rows always come back. ``exclude`` alone: the index
    is searched for ``k + len(exclude)`` rows and the excluded ones dropped. A mask passing at most
    ``GATHER_FRACTION`` of the catalog: exact top-K over the qualifying rows. A wider mask: faiss's
    ``IDSelectorBitmap`` in the search parameters, so disallowed rows never enter the result. The
    search is widened by ``N / qualifying`` (so as many qualifying rows are within reach as an
    unfiltered search has) and then 4x at a time while it returns fewer rows than asked (the
    lists nearest a user can hold no row of a filter that is far from the user's taste), up to
    ``nlist / 8`` lists probed (ivf) or 16x ``ef_search`` (hnsw); past that the exact
    ``rankcore.core.topk`` with the mask answers.

    Normaliser (:meth:`log_normalizer`): ``log sum_i exp(logit_i)`` over all N rows is estimated
    as the exact sum over the returned rows plus ``(N - T) / S'`` times the sum over the ``S'``
    rows of a fixed uniform sample (``norm_sample`` rows drawn without replacement by a seeded
    generator; size and seed are recorded in the sidecar) that are not among the ``T`` returned
    rows. With ``S >= N`` the sample is the catalog and the estimate is exact. The scores'
    relative error is the estimate's (``benches/ann_vs_exact.py`` measures it); a larger
    ``norm_sample`` lowers it as ``1 / sqrt(S)`` and costs a product with ``S`` rows per request.

    Thread safety: searches never modify the faiss index (``ef_search``/``nprobe`` travel in
    per-call search parameters), so one index serves concurrent requests. ``load`` checks sizes
    and shapes; only ``verify=True`` reads every byte (a corrupted index file is undefined
    behaviour in faiss, so verify files of unknown provenance).
    """

    def __init__(self, index, model, kind: str, params: dict, sample_rows: np.ndarray,
                 mmapped: bool = False):
        self.index = index
        self.model = model
        self.kind = kind
        self.params = dict(params)
        self.mmapped = mmapped
        self._n, self._d = int(index.ntotal), int(index.d) - 1  # plain ints: SWIG reads are slow
        self._nlist = int(index.nlist) if kind == "ivf" else 0
        table = model.item_table
        self._emb = np.asarray(table.embeddings).view(np.ndarray)
        self._bias = None if table.bias is None else np.asarray(table.bias).view(np.ndarray)
        self.sample_rows = np.ascontiguousarray(sample_rows, dtype=np.int64)
        self._sample = augment(self._emb[self.sample_rows],
                               None if self._bias is None else self._bias[self.sample_rows])
        # the sampled rows (with bias) as an item table: the normaliser's native log-sum-exp
        self._sample_table = ItemTable(self._sample[:, :self._d],
                                       None if self._bias is None else self._sample[:, self._d])
        self.ef_search = params.get("ef_search")
        self.nprobe = params.get("nprobe")

    # ----------------------------------------------------------------- properties
    @property
    def n_items(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        """The model's dimension ``d`` (the index holds ``d + 1``)."""
        return self._d

    @property
    def ef_search(self):
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value):
        self._ef_search = _positive_int(value, "ef_search")

    @property
    def nprobe(self):
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value):
        self._nprobe = _positive_int(value, "nprobe")

    def __repr__(self) -> str:
        return (f"AnnIndex(kind={self.kind!r}, n_items={self.n_items}, dim={self.dim}, "
                f"ef_search={self.ef_search}, nprobe={self.nprobe})")

    # ----------------------------------------------------------------- build
    @classmethod
    def build(cls, model, kind: str = "ivf", *, m: int = 32, ef_construction: int = 200,
              ef_search: int = 128, nlist=None, nprobe=None, threads=None,
              norm_sample: int = NORM_SAMPLE, seed: int = 0) -> "AnnIndex":
        """Index ``model``'s items.

        ``ivf``: ``nlist`` lists (default ``ann_build.default_nlist(N)``), k-means trained on at
        most ``64 * nlist`` rows, default ``nprobe`` (default ``ann_build.default_nprobe``).
        ``hnsw``: ``m`` links per node, ``ef_construction``, default ``ef_search``. ``threads``:
        OpenMP threads for the build (default faiss's). ``norm_sample`` and ``seed`` fix the
        sample of the normaliser estimate (and ``seed`` the k-means sample).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        m = _positive_int(m, "m", False)
        ef_construction = _positive_int(ef_construction, "ef_construction", False)
        ef_search = _positive_int(ef_search, "ef_search", False)
        norm_sample = _positive_int(norm_sample, "norm_sample", False)
        threads = _positive_int(threads, "threads")
        faiss = _faiss()
        table = model.item_table
        n = table.n_items
        vectors = augment(np.asarray(table.embeddings), table.bias)
        with _Threads(threads):
            if kind == "hnsw":
                index = build_hnsw(faiss, vectors, m, ef_construction)
                params = {"m": m, "ef_construction": ef_construction, "ef_search": ef_search}
            else:
                nlist = min(_positive_int(nlist, "nlist") or default_nlist(n), n)
                nprobe = _positive_int(nprobe, "nprobe") or default_nprobe(nlist)
                index = build_ivf(faiss, vectors, nlist, seed)
                params = {"nlist": nlist, "nprobe": nprobe, "assign": "l2"}
        params.update(norm_sample=norm_sample, seed=seed)
        return cls(index, model, kind, params, sample_rows(n, norm_sample, seed))

    # ----------------------------------------------------------------- search
    def _queries(self, queries) -> np.ndarray:
        q = np.asarray(queries)
        if q.dtype.kind not in "fiu":
            raise TypeError(f"queries must be a real numeric array, got dtype {q.dtype}")
        if q.ndim == 1:
            q = q[None, :]
        d = self._d
        if q.ndim != 2 or q.shape[1] != d:
            raise ValueError(f"queries must have shape (B, {d}) or ({d},), got {q.shape}")
        with np.errstate(over="ignore"):
            q = q.astype(np.float32)
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or inf (or values beyond float32 range)")
        out = np.ones((q.shape[0], d + 1), dtype=np.float32)
        out[:, :d] = q
        return out

    def _params(self, ef_search, nprobe, sel=None):
        faiss = _faiss()
        if self.kind == "hnsw":
            p = faiss.SearchParametersHNSW()
            p.efSearch = _positive_int(ef_search, "ef_search") or self.ef_search or 16
        else:
            p = faiss.SearchParametersIVF()
            p.nprobe = min(_positive_int(nprobe, "nprobe") or self.nprobe or 1, self._nlist)
        if sel is not None:
            p.sel = sel
        return p

    def _exact_logits(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """float64 logits of ``rows`` (B, k), -inf where a row is -1."""
        bad = rows < 0
        safe = np.where(bad, 0, rows)
        q64 = q[:, :self._d].astype(np.float64)
        if rows.shape[0] == 1:  # one request: a matrix-vector product, no einsum set-up
            lg = (self._emb[safe[0]].astype(np.float64) @ q64[0])[None, :]
        else:
            lg = np.einsum("bkd,bd->bk", self._emb[safe].astype(np.float64), q64)
        if self._bias is not None:
            lg += self._bias[safe]
        lg[bad] = -np.inf
        return lg

    def _ordered(self, q, rows):
        """Rows and float32 logits, best first, equal logits in catalog order, -1 padding last."""
        lg = self._exact_logits(q, rows)
        order = np.lexsort((np.where(rows >= 0, rows, np.iinfo(np.int64).max), -lg), axis=-1)
        with np.errstate(over="ignore"):
            if rows.shape[0] == 1:  # one request: plain indexing (take_along_axis costs more)
                return rows[:, order[0]], lg[:, order[0]].astype(np.float32)
            lg = np.take_along_axis(lg, order, axis=-1).astype(np.float32)
        return np.take_along_axis(rows, order, axis=-1), lg

    def search(self, queries, k: int, *, ef_search=None, nprobe=None):
        """Approximate top-``k`` rows of each query.

        ``queries``: float (B, d) or (d,). Returns ``(rows int64 (B, k), logits float32 (B, k))``
        best first; ``-1`` rows (logit ``-inf``) pad past what the index found. Logits are
        recomputed from the item table. ``ef_search`` (hnsw) / ``nprobe`` (ivf) override the
        index's settings for this call.
        """
        return self._search(self._queries(queries), _positive_int(k, "k", False), ef_search, nprobe)

    def _search(self, q, k: int, ef_search, nprobe):
        """``search`` for augmented float32 queries ``q`` (B, d + 1) (checked by ``_queries``)."""
        rows = self._faiss_search(q, k, self._params(ef_search, nprobe))
        return self._ordered(q, rows)

    def _faiss_search(self, q, k: int, params) -> np.ndarray:
        """faiss's top-``k`` rows (int64 (B, k), -1 padded) for augmented queries ``q``."""
        return self.index.search(q, k, params=params)[1].astype(np.int64, copy=False)

    def _eligible(self, allowed, exclude):
        """(bool mask or None, unique excluded rows int64)."""
        n = self.n_items
        mask = None
        if allowed is not None:
            a = np.asarray(allowed)
            if a.dtype != np.bool_ and a.dtype.kind not in "iu":
                raise TypeError(f"allowed_mask must be a bool or integer mask, got dtype {a.dtype}")
            if a.shape != (n,):
                raise ValueError(f"allowed_mask must have shape ({n},), got {a.shape}")
            mask = a != 0
        ex = np.zeros(0, dtype=np.int64)
        if exclude is not None:
            ex = np.asarray(exclude).reshape(-1)
            if ex.size and ex.dtype.kind not in "iu":
                raise TypeError(f"exclude must be integer row indices, got dtype {ex.dtype}")
            ex = np.unique(ex.astype(np.int64))
            if ex.size and (ex[0] < 0 or ex[-1] >= n):
                bad = ex[0] if ex[0] < 0 else ex[-1]
                raise IndexError(f"excluded row {int(bad)} out of range for a catalog of {n} rows")
        return mask, ex

    def search_filtered(self, query, k: int, allowed_mask=None, exclude=None, *, ef_search=None,
                        nprobe=None):
        """Top-``k`` of one query among the allowed, not excluded rows (see the class docstring).

        ``allowed_mask``: bool/int (N,), rows whose entry is 0 are never returned. ``exclude``:
        row numbers never returned. Returns ``(rows int64 (n,), logits float32 (n,))``,
        ``n = min(k, qualifying rows)``, best first.
        """
        k = _positive_int(k, "k", False)
        q = self._queries(query)
        if q.shape[0] != 1:
            raise ValueError(f"search_filtered takes one query, got {q.shape[0]}")
        return self._search_filtered(q, k, allowed_mask, exclude, ef_search, nprobe)

    def _search_filtered(self, q, k: int, allowed_mask, exclude, ef_search, nprobe):
        """``search_filtered`` for one augmented query ``q`` (1, d + 1)."""
        mask, ex = self._eligible(allowed_mask, exclude)
        n = self._n
        if mask is None:
            want = min(k, n - ex.size)
            if want <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            rows, lg = self._search(q, min(n, k + ex.size), ef_search, nprobe)
            if not ex.size:
                keep = rows[0] >= 0
            else:
                keep = (rows[0] >= 0) & ~np.isin(rows[0], ex)
            if int(keep.sum()) >= want:
                return rows[0][keep][:want], lg[0][keep][:want]
            return self._exact(q, k, None, ex)
        if ex.size:
            mask = mask.copy()
            mask[ex] = False
        qualifying = int(np.count_nonzero(mask))
        want = min(k, qualifying)
        if want == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if qualifying <= GATHER_FRACTION * n:
            return self._gathered(q, want, np.flatnonzero(mask))
        bits = np.packbits(mask, bitorder="little")
        sel = _faiss().IDSelectorBitmap(n, _faiss().swig_ptr(bits))
        base = self._params(ef_search, nprobe)
        width = base.efSearch if self.kind == "hnsw" else base.nprobe
        limit = max(width, self._nlist // 8) if self.kind == "ivf" else max(width, 16 * width)
        # as many qualifying rows within reach as an unfiltered search has, then 4x wider
        width = min(limit, int(width * n / qualifying))
        while True:
            p = self._params(width, None, sel) if self.kind == "hnsw" else self._params(None, width, sel)
            rows = self._faiss_search(q, want, p)
            if int(np.count_nonzero(rows[0] >= 0)) >= want:
                rows, lg = self._ordered(q, rows)
                return rows[0], lg[0]
            if width >= limit:
                return self._exact(q, k, mask, None)
            width = min(limit, 4 * width)

    def _gathered(self, q, k, rows):
        lg = self._exact_logits(q, rows[None, :])[0]
        order = np.lexsort((rows, -lg))[:k]
        with np.errstate(over="ignore"):
            return rows[order], lg[order].astype(np.float32)

    def _exact(self, q, k, mask, ex):
        res = topk(q[0, :self.dim], self.model.item_table, k, allowed=mask,
                   exclude=None if ex is None or not ex.size else ex)
        return res.items, res.logits

    # ----------------------------------------------------------------- normaliser
    def log_normalizer(self, queries, rows, logits) -> np.ndarray:
        """float64 (B,): the estimate of ``log sum over all N rows of exp(logit)`` per query.

        ``rows`` / ``logits`` (B, T) or (T,): the rows already scored exactly for that query
        (e.g. what :meth:`search` returned; ``-1`` rows are ignored).

        The sample's own log-sum-exp comes from the native top-K kernel over the sampled rows
        (one pass, no logit array); the returned rows that fall in the sample are then taken out
        of it by subtraction. When they hold over half of the sample's mass (the subtraction
        would magnify rounding, or cancel), that query's remainder is summed explicitly instead.
        """
        q = self._queries(queries)
        rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
        lg = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        if rows.shape != lg.shape or rows.shape[0] != q.shape[0]:
            raise ValueError(f"rows {rows.shape} and logits {lg.shape} must be (B, T) for {q.shape[0]} queries")
        lse_sample = self._sample_lse(q)
        valid = rows >= 0
        return np.array([self._lognorm_one(q[b], rows[b][valid[b]], lg[b][valid[b]], lse_sample[b])
                         for b in range(q.shape[0])], dtype=np.float64)

    def _lognorm_one(self, q, rows, lg, lse_sample: float) -> float:
        """The estimate for one augmented query ``q`` (d + 1,), its scored ``rows`` (T,) and their
        float logits ``lg``, given the sample's log-sum-exp ``lse_sample``."""
        n, s, t = self._n, self.sample_rows.size, rows.size
        lg = lg.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            m = lg.max() if t else -np.inf
            mm = m if np.isfinite(m) else 0.0
            lse_top = float(mm + np.log(np.exp(lg - mm).sum())) if t else -np.inf
            if t >= n:
                return lse_top
            pos = np.minimum(np.searchsorted(self.sample_rows, rows), s - 1)
            hit = self.sample_rows[pos] == rows
            n_rest = s - int(np.count_nonzero(hit))
            if n_rest == 0:
                return lse_top
            frac = float(np.exp(lg[hit] - lse_sample).sum())
            scale = np.log((n - t) / n_rest)
            if frac <= 0.5:
                return float(np.logaddexp(lse_top, lse_sample + np.log1p(-frac) + scale))
            # The returned rows hold over half of the sample's mass: the subtraction would magnify
            # rounding (or cancel), so sum the rest of the sample explicitly.
            rest = np.delete((self._sample @ q).astype(np.float64), pos[hit])
            mx = rest.max()
            return float(np.logaddexp(lse_top, mx + np.log(np.exp(rest - mx).sum()) + scale))

    def _sample_lse(self, q: np.ndarray) -> np.ndarray:
        """float64 (B,): log sum over the sampled rows of exp(logit) for augmented queries q."""
        users = np.ascontiguousarray(q[:, :self._d])
        return np.asarray(topk_batch(users, self._sample_table, 1, threads=1).log_normalizer,
                          dtype=np.float64)

    def topk(self, user, k: int, *, allowed=None, exclude=None, ef_search=None, nprobe=None) -> TopK:
        """One request as a :class:`rankcore.core.TopK` (the exact engine's result type).

        Rows and logits from :meth:`search_filtered`; ``log_normalizer`` is the estimate of
        :meth:`log_normalizer`, and ``scores = exp(logit - log_normalizer)``.
        """
        k = _positive_int(k, "k", False)
        q = self._queries(user)
        if q.shape[0] != 1:
            raise ValueError(f"topk takes one query, got {q.shape[0]}")
        rows, lg = self._search_filtered(q, k, allowed, exclude, ef_search, nprobe)
        lognorm = self._lognorm_one(q[0], rows, lg, float(self._sample_lse(q)[0]))
        return TopK(rows, lg, np.exp(lg.astype(np.float64) - lognorm), lognorm)

    # ----------------------------------------------------------------- persistence
    def _fingerprint(self) -> str:
        """SHA-256 of the sampled augmented rows: ties a saved index to the table it indexed."""
        return hashlib.sha256(self._sample.tobytes()).hexdigest()

    def save(self, model_dir) -> str:
        """Write ``ann.<kind>.faissindex`` and its entry in ``ann.json``; returns the index path.

        Both files are written under a temporary name and renamed into place, the sidecar last.
        """
        return save_index(self, model_dir)

    @classmethod
    def load(cls, model_dir, model, *, kind=None, mmap: bool = True, verify: bool = False) -> "AnnIndex":
        """Read the index saved in ``model_dir`` for ``model`` (the model loaded from there).

        ``kind``: which index (default: ``ivf`` if saved, else the only one). ``mmap``: read with
        ``IO_FLAG_MMAP`` (faiss maps the parts its reader can; ``index.mmapped`` says the flag was
        accepted), falling back to a plain read. ``verify``: check its SHA-256.
        Raises ``ModelFormatError`` naming the file when the sidecar or index is missing or broken,
        or when the index does not match the model (row count, dimension, indexed rows).
        """
        index, kind, params, sample, mmapped, fingerprint, path = read_index(
            model_dir, model, kind, mmap, verify)
        self = cls(index, model, kind, params, sample, mmapped)
        if fingerprint != self._fingerprint():
            raise ModelFormatError(f"{path}: built from different item vectors than the model's")
        return self
