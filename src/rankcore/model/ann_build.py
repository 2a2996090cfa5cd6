"""Building the faiss indexes behind :class:`rankcore.model.ann.AnnIndex`.

Both kinds index the augmented rows ``[e_i, b_i]`` (inner product = logit for the query
``[u, 1]``; see :mod:`rankcore.model.ann`).

- ``ivf`` (``IndexIVFFlat``, the default): k-means (Euclidean) on a sample of the rows gives
  ``nlist`` centroids; every row is filed in the list of its *nearest* centroid, so lists stay
  about ``N / nlist`` long. The index then keeps the same centroids in an inner-product quantizer,
  so a query probes the ``nprobe`` lists whose centroid has the largest inner product with it
  (where the best logits are likely: ``u . x = u . c + u . (x - c)``). Assigning rows by inner
  product instead (faiss's default for an inner-product IVF) files a cluster's best rows into a
  few very long lists: on the 2M synthetic catalog the longest list held 66k rows instead of 1.8k
  and a request took 4 ms instead of 0.7 ms at the same recall.
- ``hnsw`` (``IndexHNSWFlat``, inner product): a graph, no training; better on small catalogs
  that few lists would cover, but its build is 10x slower at 2M rows and its recall at 2M levels
  off below 0.95 on the clustered synthetic catalog (``docs/performance.md``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["build_hnsw", "build_ivf", "default_nlist", "default_nprobe", "faiss_module",
           "sample_rows"]


def faiss_module():
    import faiss  # optional extra "ann" (faiss-cpu); imported on first use only
    return faiss


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The normaliser estimate's rows: ``size`` of ``n`` drawn without replacement by a generator
    seeded with ``seed``, sorted (all rows when ``size >= n``). Build and load draw the same."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def default_nlist(n: int) -> int:
    """Lists for ``n`` rows: ``4 sqrt(n)`` (at least 1, at most ``n``); 5,657 for 2M rows.

    On the 2M synthetic catalog recall@25 follows the rows a query reads, and finer lists need
    fewer of them (about 10k rows for 0.95 with 5,657 or 8,192 lists, 15k with 2,048), while the
    k-means build grows as ``nlist^2`` (144 s at 5,657 lists, 255 s at 8,192, two threads)."""
    return max(1, min(n, int(round(4 * np.sqrt(n)))))


def default_nprobe(nlist: int) -> int:
    """Lists probed by default: ``nlist / 160``, at least 16 (all of them when fewer)."""
    return min(nlist, max(16, nlist // 160))


def build_hnsw(faiss, vectors: np.ndarray, m: int, ef_construction: int):
    """``IndexHNSWFlat`` (inner product) over ``vectors`` (float32, N x D)."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(vectors)
    return index


def build_ivf(faiss, vectors: np.ndarray, nlist: int, seed: int, niter: int = 20):
    """``IndexIVFFlat`` (inner product) whose rows were filed by Euclidean distance to the
    centroids and whose probes rank lists by inner product (module docstring)."""
    n, dim = vectors.shape
    rng = np.random.default_rng(seed)
    cap = 64 * nlist  # enough rows for k-means; more only slows the build
    train = vectors if n <= cap else vectors[np.sort(rng.choice(n, cap, replace=False))]
    km = faiss.Clustering(dim, nlist)
    km.niter, km.seed = niter, int(seed) % (2 ** 31)
    km.max_points_per_centroid = 64
    km.min_points_per_centroid = 1  # small catalogs: no warning, the sample is the catalog
    km.train(np.ascontiguousarray(train), faiss.IndexFlatL2(dim))
    centroids = faiss.vector_to_array(km.centroids).reshape(nlist, dim)
    l2 = faiss.IndexFlatL2(dim)
    l2.add(centroids)
    index = faiss.IndexIVFFlat(l2, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.add(vectors)  # filed by the Euclidean quantizer
    ip = faiss.IndexFlatIP(dim)
    ip.add(centroids)
    ip.this.disown()  # the index owns (and frees) its new quantizer
    index.quantizer = ip
    index.own_fields = True
    return index
