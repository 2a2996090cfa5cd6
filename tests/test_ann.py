"""The faiss engine (``rankcore.model.ann``) against the exact ``topk`` and a float64 oracle.

- Transform: the logits of the rows an index returns equal the oracle's (integer tables make
  every dot product exact in float32), best first, ties in catalog order.
- Recall@25 >= 0.95 for hnsw and ivf (default settings) on a seeded clustered catalog; ivf files
  rows by Euclidean distance and probes by inner product; probing every list is exhaustive.
- Filters (hypothesis): no disallowed or excluded row ever comes back, ``min(k, qualifying)`` rows
  always do, on every path (exclude only, sparse mask, selector, exact fallback).
- Persistence: save/load round trip, checksum, size, shape and vector mismatches.
- Normaliser estimate: exact when the sample covers the catalog; a bounded relative error otherwise.
"""
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("faiss", reason="faiss-cpu (the 'ann' extra) is not installed")

import rankcore  # noqa: E402
from rankcore.core import topk  # noqa: E402
from rankcore.errors import ModelFormatError  # noqa: E402
from rankcore.model import Model, load_model  # noqa: E402
from rankcore.model.ann import SIDECAR, AnnIndex, augment  # noqa: E402
from rankcore.cli.index import cmd_index, configure_index_parser  # noqa: E402
from rankcore.model.synthetic import synthetic  # noqa: E402


def int_model(n, d, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    emb = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    b = rng.integers(-4, 5, size=n).astype(np.float32) if bias else None
    return Model.from_arrays([f"i{j}" for j in range(n)], emb, item_bias=b)


def oracle_logits(model, u):
    lg = model.item_table.embeddings.astype(np.float64) @ np.asarray(u, np.float64)
    if model.item_bias is not None:
        lg += model.item_bias
    return lg


@pytest.fixture(scope="module")
def clustered_model():
    return synthetic(n_users=100, n_items=20_000, item_bias=True, with_context=False,
                     with_metadata=False, with_history=False)


@pytest.fixture(scope="module")
def clustered(clustered_model):
    return clustered_model, AnnIndex.build(clustered_model, "hnsw", threads=2)


@pytest.fixture(scope="module")
def clustered_ivf(clustered_model):
    return clustered_model, AnnIndex.build(clustered_model, threads=2)  # the default kind


# ----------------------------------------------------------------------------- transform

@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_returned_logits_are_exact_and_ordered(kind):
    m = int_model(500, 7)
    idx = AnnIndex.build(m, kind, nprobe=4)
    users = np.random.default_rng(1).integers(-2, 3, size=(20, 7)).astype(np.float32)
    rows, logits = idx.search(users, 10)
    assert rows.shape == logits.shape == (20, 10)
    assert rows.dtype == np.int64 and logits.dtype == np.float32
    for u, r, lg in zip(users, rows, logits):
        assert (r >= 0).all()
        exact = oracle_logits(m, u)
        np.testing.assert_array_equal(lg, exact[r].astype(np.float32))
        key = list(zip(-lg, r))
        assert key == sorted(key)  # best first, equal logits in catalog order


def test_ivf_probing_every_list_is_the_exact_top_k():
    m = int_model(400, 5, seed=3)
    idx = AnnIndex.build(m, "ivf", nlist=8)
    users = np.random.default_rng(2).integers(-2, 3, size=(10, 5)).astype(np.float32)
    rows, logits = idx.search(users, 15, nprobe=8)
    for u, r, lg in zip(users, rows, logits):
        ex = topk(u, m.item_table, 15)
        np.testing.assert_array_equal(lg, ex.logits)  # the same logits (ties may swap rows)
        np.testing.assert_array_equal(np.sort(oracle_logits(m, u)[r]), np.sort(ex.logits))


def _lists(index):
    """Each row's inverted list (int64 (N,)) in a faiss IVF index."""
    faiss = pytest.importorskip("faiss")
    owner = np.full(index.ntotal, -1, dtype=np.int64)
    for li in range(index.nlist):
        size = index.invlists.list_size(li)
        if size:
            owner[faiss.rev_swig_ptr(index.invlists.get_ids(li), size)] = li
    return owner


def test_ivf_files_rows_by_distance_and_probes_by_inner_product(clustered_ivf):
    """The centroids are Euclidean k-means means of the rows (not unit vectors, as faiss's
    spherical k-means for an inner-product IVF makes them: that index reached recall@25 0.58 on
    2M rows), rows go to their nearest centroid, and a query probes the lists whose centroid has
    the largest inner product with it."""
    faiss = pytest.importorskip("faiss")
    m, idx = clustered_ivf
    index = idx.index
    assert idx.kind == "ivf" and idx.params["assign"] == "l2"
    assert index.nlist == int(round(4 * np.sqrt(m.n_items)))
    centroids = index.quantizer.reconstruct_n(0, index.nlist).astype(np.float64)
    rows = np.asarray(idx._sample, dtype=np.float64)[:2000]  # augmented rows [e, b]
    owner = _lists(index)[idx.sample_rows[:2000]]
    d2 = (rows ** 2).sum(1)[:, None] - 2 * rows @ centroids.T + (centroids ** 2).sum(1)[None, :]
    np.testing.assert_allclose(d2[np.arange(len(rows)), owner], d2.min(axis=1), rtol=1e-5, atol=1e-5)
    assert index.quantizer.metric_type == faiss.METRIC_INNER_PRODUCT
    owner_all = _lists(index)
    every = augment(np.asarray(m.item_table.embeddings), m.item_table.bias).astype(np.float64)
    sizes = np.bincount(owner_all, minlength=index.nlist)
    means = np.zeros_like(centroids)
    np.add.at(means, owner_all, every)
    full = sizes >= 5
    means = means[full] / sizes[full, None]
    gap = np.linalg.norm(centroids[full] - means, axis=1) / np.linalg.norm(means, axis=1)
    assert np.median(gap) < 0.05
    for u in m.user_embeddings[:10]:
        q = np.append(u, 1.0).astype(np.float64)
        best = int(np.argmax(centroids @ q))
        got, _ = idx.search(u, 5, nprobe=1)
        assert (owner_all[got[0][got[0] >= 0]] == best).all()


def test_k_above_catalog_pads_with_minus_one():
    m = int_model(12, 3)
    rows, logits = AnnIndex.build(m, "hnsw").search(np.ones(3), 20)
    assert rows.shape == (1, 20)
    assert (rows[0, :12] >= 0).all() and sorted(rows[0, :12].tolist()) == list(range(12))
    assert (rows[0, 12:] == -1).all() and np.isneginf(logits[0, 12:]).all()


@pytest.mark.parametrize("which", ["clustered", "clustered_ivf"])
def test_recall_at_25_on_a_clustered_catalog(which, request):
    m, idx = request.getfixturevalue(which)
    users = m.user_embeddings
    rows, _ = idx.search(users, 25)
    recall = [len(set(topk(u, m.item_table, 25).items.tolist()) & set(r.tolist())) / 25
              for u, r in zip(users, rows)]
    assert np.mean(recall) >= 0.95


def test_search_settings_per_index_and_per_call(clustered):
    m, idx = clustered
    u = m.user_embeddings[:20]
    assert idx.ef_search == 128
    narrow = idx.search(u, 25, ef_search=1)[0]
    wide = idx.search(u, 25, ef_search=400)[0]
    truth = [set(topk(x, m.item_table, 25).items.tolist()) for x in u]

    def recall(rows):
        return np.mean([len(t & set(r.tolist())) for t, r in zip(truth, rows)])
    assert recall(wide) > recall(narrow)
    idx.ef_search = 400
    try:
        np.testing.assert_array_equal(idx.search(u, 25)[0], wide)
    finally:
        idx.ef_search = 128
    with pytest.raises(ValueError, match="ef_search"):
        idx.ef_search = 0
    with pytest.raises(ValueError, match="ef_search"):
        idx.search(u, 25, ef_search=-3)


# ----------------------------------------------------------------------------- filters

@given(n=st.integers(1, 250), k=st.integers(1, 40), kind=st.sampled_from(["hnsw", "ivf"]),
       density=st.sampled_from([None, 0.0, 0.01, 0.2, 0.6, 1.0]), n_ex=st.integers(0, 30),
       seed=st.integers(0, 2**16))
def test_filters_never_leak_and_k_is_honoured(n, k, kind, density, n_ex, seed):
    rng = np.random.default_rng(seed)
    m = int_model(n, 4, seed=seed)
    idx = AnnIndex.build(m, kind, nprobe=1, ef_search=8)
    u = rng.integers(-2, 3, size=4).astype(np.float32)
    mask = None if density is None else rng.random(n) < density
    ex = rng.integers(0, n, size=n_ex)
    ok = np.ones(n, dtype=bool) if mask is None else mask.copy()
    ok[ex] = False
    rows, logits = idx.search_filtered(u, k, mask, ex)
    assert len(rows) == min(k, int(ok.sum()))
    assert ok[rows].all() and len(set(rows.tolist())) == len(rows)
    np.testing.assert_array_equal(logits, oracle_logits(m, u)[rows].astype(np.float32))
    assert (np.diff(logits) <= 0).all()


def test_selective_filter_falls_back_to_the_exact_answer():
    m = int_model(300, 4, seed=5)
    idx = AnnIndex.build(m, "ivf", nlist=17, nprobe=1)  # one list of ~18 rows cannot give 40
    mask = np.arange(300) % 2 == 0
    u = np.array([1, -1, 2, 0], np.float32)
    rows, logits = idx.search_filtered(u, 40, mask)
    ex = topk(u, m.item_table, 40, allowed=mask)
    np.testing.assert_array_equal(rows, ex.items)
    np.testing.assert_array_equal(logits, ex.logits)


def test_filtered_ivf_search_widens_before_the_exact_fallback(clustered_ivf, monkeypatch):
    """A filter that removes every list a user's search would probe: the search probes more
    lists (rather than scanning the catalog exactly) and still returns the filter's best rows."""
    m, idx = clustered_ivf
    owner = _lists(idx.index)
    centroids = idx.index.quantizer.reconstruct_n(0, idx.index.nlist)
    fallbacks = []
    exact = AnnIndex._exact
    monkeypatch.setattr(AnnIndex, "_exact", lambda self, *a: fallbacks.append(1) or exact(self, *a))
    recall = []
    for u in m.user_embeddings[:20]:
        near = np.argsort(-(centroids @ np.append(u, 1.0)))[:2 * idx.nprobe]
        mask = ~np.isin(owner, near)
        rows, _ = idx.search_filtered(u, 25, mask)
        assert len(rows) == 25 and mask[rows].all()
        truth = topk(u, m.item_table, 25, allowed=mask).items
        recall.append(len(set(rows.tolist()) & set(truth.tolist())) / 25)
    assert not fallbacks
    assert np.mean(recall) >= 0.9


def test_filter_arguments_are_checked():
    m = int_model(50, 3)
    idx = AnnIndex.build(m, "hnsw")
    u = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="allowed_mask must have shape"):
        idx.search_filtered(u, 5, np.ones(49, bool))
    with pytest.raises(TypeError, match="allowed_mask"):
        idx.search_filtered(u, 5, np.ones(50, np.float32))
    with pytest.raises(IndexError, match="excluded row 50"):
        idx.search_filtered(u, 5, exclude=[3, 50])
    with pytest.raises(ValueError, match="one query"):
        idx.search_filtered(np.ones((2, 3)), 5)
    with pytest.raises(ValueError, match="shape"):
        idx.search(np.ones(4), 5)
    with pytest.raises(ValueError, match="NaN"):
        idx.search(np.array([1, np.nan, 0]), 5)
    with pytest.raises(ValueError, match="k must be"):
        idx.search(u, 0)
    with pytest.raises(TypeError, match="k must be"):
        idx.search(u, 2.5)
    with pytest.raises(ValueError, match="kind"):
        AnnIndex.build(m, "flat")


# ----------------------------------------------------------------------------- normaliser

def test_normaliser_is_exact_when_the_sample_covers_the_catalog():
    m = synthetic(n_users=10, n_items=3000, item_bias=True, with_context=False,
                  with_metadata=False, with_history=False)
    idx = AnnIndex.build(m, "hnsw", norm_sample=5000)
    for u in m.user_embeddings:
        got, ex = idx.topk(u, 25), topk(u, m.item_table, 25)
        assert got.log_normalizer == pytest.approx(ex.log_normalizer, abs=1e-5)
        np.testing.assert_allclose(got.scores, np.exp(got.logits.astype(np.float64) - got.log_normalizer))


def test_normaliser_estimate_relative_error(clustered):
    # 2,048 sampled rows of 20,000, 100 users of the seeded catalog: the measured relative error
    # of the scores is 0.057 on average and 0.17 at worst; a uniform sample's standard error
    # is about sqrt(12 / 2048) = 0.08 here (each user's genre holds 1/12 of the catalog and
    # dominates the sum), so 0.1 mean / 0.35 worst (about twice the measured) leave room without accepting a broken estimate.
    m, _ = clustered
    idx = AnnIndex.build(m, "ivf", nlist=64, nprobe=64, norm_sample=2048)
    err = []
    for u in m.user_embeddings:
        got, ex = idx.topk(u, 25), topk(u, m.item_table, 25)
        assert (got.scores <= 1).all()
        err.append(abs(np.expm1(ex.log_normalizer - got.log_normalizer)))
    assert np.mean(err) < 0.1 and np.max(err) < 0.35


# ----------------------------------------------------------------------------- persistence

@pytest.fixture
def saved(tmp_path):
    m = int_model(800, 6, seed=9)
    m.save(tmp_path)
    m = load_model(tmp_path)
    return tmp_path, m, AnnIndex.build(m, "hnsw", m=8, ef_construction=40, ef_search=32)


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(saved, mmap):
    path, m, idx = saved
    file = idx.save(path)
    assert os.path.basename(file) == "ann.hnsw.faissindex"
    side = json.loads((path / SIDECAR).read_text())["indexes"]["hnsw"]
    assert (side["kind"], side["n_items"], side["dim"]) == ("hnsw", 800, 6)
    assert side["params"]["ef_search"] == 32 and len(side["sha256"]) == 64
    assert not [f for f in os.listdir(path) if ".tmp-" in f]
    back = AnnIndex.load(path, m, mmap=mmap, verify=True)
    assert back.ef_search == 32
    u = np.random.default_rng(0).integers(-2, 3, size=(5, 6)).astype(np.float32)
    for a, b in zip(idx.search(u, 10), back.search(u, 10)):
        np.testing.assert_array_equal(a, b)
    ivf = AnnIndex.build(m, "ivf", nlist=16, nprobe=3)
    ivf.save(path)  # a second kind joins the sidecar
    assert AnnIndex.load(path, m, kind="ivf").nprobe == 3
    assert AnnIndex.load(path, m).kind == "ivf"  # both saved: the preferred kind


def test_load_errors_name_the_file(saved, tmp_path_factory):
    path, m, idx = saved
    with pytest.raises(ModelFormatError, match="ann.json"):
        AnnIndex.load(path, m)
    file = idx.save(path)
    with pytest.raises(ModelFormatError, match="no 'ivf' index"):
        AnnIndex.load(path, m, kind="ivf")
    other = int_model(801, 6)
    with pytest.raises(ModelFormatError, match="ann.hnsw.faissindex.*801"):
        AnnIndex.load(path, other)
    with pytest.raises(ModelFormatError, match="different item vectors"):
        AnnIndex.load(path, int_model(800, 6, seed=10))
    data = bytearray(open(file, "rb").read())
    data[-5] ^= 0xFF
    open(file, "wb").write(bytes(data))
    AnnIndex.load(path, m)  # the size still matches: only verify reads every byte
    with pytest.raises(ModelFormatError, match="ann.hnsw.faissindex: SHA-256"):
        AnnIndex.load(path, m, verify=True)
    open(file, "wb").write(bytes(data[:100]))
    with pytest.raises(ModelFormatError, match="ann.hnsw.faissindex: size"):
        AnnIndex.load(path, m)
    (path / SIDECAR).write_text("{not json")
    with pytest.raises(ModelFormatError, match="ann.json: unreadable"):
        AnnIndex.load(path, m)


def test_index_command(saved, capsys):
    import argparse

    path, m, _ = saved
    args = configure_index_parser(argparse.ArgumentParser()).parse_args(
        [str(path), "--kind", "ivf", "--nlist", "10", "--nprobe", "10"])
    assert cmd_index(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["kind"], out["n_items"], out["params"]["nlist"]) == ("ivf", 800, 10)
    idx = AnnIndex.load(path, m, kind="ivf", verify=True)
    u = np.ones(6, np.float32)
    np.testing.assert_array_equal(idx.search(u, 5)[1][0], topk(u, m.item_table, 5).logits)


def test_public_names_unchanged():
    assert rankcore.topk is topk
