"""Compressed item tables (float16, bfloat16, int8 with a per-row scale).

- Forced-kernel tests: every native kernel (serial, avx2), every compressed dtype, dims around the
  8-element blocks and tails; logits held to the NumPy reference, which dequantises and scores in
  float64. Raw tables with ld == dim (no padding to over-read) and with NaN in the padding.
- The catalog top-K per dtype and kernel against the NumPy top-K.
- Hypothesis parity of every backend per dtype against the float64 reference.
- Bad tables: NaN/inf (the same ValueError as float32), values beyond float16/bfloat16, missing or
  misplaced int8 scales, unknown dtypes, from_padded layouts.
- Fidelity: maximum logit error against float32 on unit-scale data, and top-10 overlap with the
  float32 ranking on the synthetic model and on an ALS model trained by implicit.
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rankcore
from rankcore.core import backend as core_backend
from rankcore.cli import main as cli_main
from rankcore.core import quantize
from rankcore.core.table import aligned_zeros
from rankcore.core.topk import topk, topk_batch
from rankcore.datasets import synthetic, synthetic_interactions
from rankcore.errors import ModelFormatError
from rankcore.model import load_model
from rankcore.train import train

_core = pytest.importorskip("rankcore._core")

KERNELS = _core.available_kernels()
COMPRESSED = ["float16", "bfloat16", "int8"]
DIMS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 135, 136, 200]
BACKENDS = core_backend.available_backends()
# Logit tolerance against the float64 dequantised reference: float32 accumulation only.
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(params=KERNELS)
def kernel(request):
    previous = _core.active_kernel()
    _core.set_kernel(request.param)
    try:
        yield request.param
    finally:
        _core.set_kernel(previous)


def unit_rows(rng, n, d):
    return (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)


def ref_logits(table: rankcore.ItemTable, user, rows):
    emb = quantize.dequantize(table.data, table.row_scale, rows, table.dim, np.float64)
    out = emb @ user.astype(np.float64)
    if table.bias is not None:
        out += table.bias[rows]
    return out


def close(got, want, user, table, rows):
    mag = np.abs(quantize.dequantize(table.data, table.row_scale, rows, table.dim, np.float64)) @ np.abs(user)
    np.testing.assert_array_less(np.abs(got - want), RTOL * np.abs(want) + ATOL * (1 + mag))


# --------------------------------------------------------------------------- forced kernels

@pytest.mark.parametrize("dtype", COMPRESSED)
@pytest.mark.parametrize("dim", DIMS)
def test_forced_kernel_logits_and_order(kernel, dtype, dim):
    rng = np.random.default_rng(dim)
    n = 300
    table = rankcore.ItemTable(unit_rows(rng, n, dim), 0.1 * rng.standard_normal(n), dtype=dtype)
    user = rng.standard_normal(dim).astype(np.float32)
    cands = rng.integers(0, n, 257)
    s = rankcore.score(user, table, cands, backend="cpp")
    close(s.logits, ref_logits(table, user, cands), user, table, cands)
    assert abs(float(s.scores.sum(dtype=np.float64)) - 1) < 1e-5
    r = rankcore.rank(user, table, cands, k=17, backend="cpp")
    order = np.argsort(-s.scores, kind="stable")[:17]
    np.testing.assert_array_equal(r.items, cands[order])
    np.testing.assert_array_equal(r.scores, s.scores[order])
    b = rankcore.rank_batch(np.stack([user, -user]), table, np.stack([cands, cands[::-1]]), k=5, threads=2)
    np.testing.assert_array_equal(b.items[:5], r.items[:5])


@pytest.mark.parametrize("dtype", COMPRESSED)
@pytest.mark.parametrize("dim", [1, 7, 8, 9, 33, 64, 135])
def test_raw_tables_without_padding_and_with_nan_padding(kernel, dtype, dim):
    """ld == dim: the tails must not read past a row; NaN padding columns must never be read."""
    rng = np.random.default_rng(100 + dim)
    n = 50
    emb = unit_rows(rng, n, dim)
    stored, scale = quantize.quantize_rows(emb, dtype)
    user = rng.standard_normal((1, dim)).astype(np.float32)
    cands = np.arange(n, dtype=np.int64)
    exact = np.ascontiguousarray(stored)
    padded = np.zeros((n, dim + 5), dtype=stored.dtype)
    padded[:, :dim] = stored
    if dtype == "float16":
        padded[:, dim:] = np.float16(np.nan)
    elif dtype == "bfloat16":
        padded[:, dim:] = 0x7FC0  # NaN
    want = (quantize.dequantize(exact, scale, dim=dim, out_dtype=np.float64) @ user[0].astype(np.float64))
    for t in (exact, padded):
        _, logits = _core.score(user, t, None, dim, cands, None, False, 1, row_scale=scale)
        np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
        rows, lg, _, _, _ = _core.topk(user, t, None, dim, 5, None, None, None, 1.0, 1, row_scale=scale)
        np.testing.assert_allclose(lg[0], np.sort(want)[::-1][:5], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", COMPRESSED)
@pytest.mark.parametrize("dim", [3, 16, 33, 64])
def test_topk_per_dtype_matches_numpy(kernel, dtype, dim):
    rng = np.random.default_rng(dim)
    n = 3000
    table = rankcore.ItemTable(unit_rows(rng, n, dim), 0.1 * rng.standard_normal(n), dtype=dtype)
    users = rng.standard_normal((4, dim)).astype(np.float32)
    got = topk_batch(users, table, 20, backend="cpp", threads=2)
    want = topk_batch(users, table, 20, backend="numpy")
    for b in range(4):
        np.testing.assert_allclose(got[b].logits, want[b].logits, rtol=1e-5, atol=1e-5)
        assert len(set(got[b].items) ^ set(want[b].items)) <= 2  # only near-ties at the cut may swap
        assert abs(got.log_normalizer[b] - want.log_normalizer[b]) < 1e-5
    # a single user is scanned as four runs side by side, widened in registers (AVX2); a batch
    # widens blocks into float32 first: the same operations, so bitwise the same logits
    one = topk(users[1], table, 20, backend="cpp")
    np.testing.assert_array_equal(one.items, got[1].items)
    np.testing.assert_array_equal(one.logits, got[1].logits)


# --------------------------------------------------------------------------- parity per backend

@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(COMPRESSED), n=st.integers(1, 40), dim=st.integers(1, 70),
       k=st.integers(0, 45), seed=st.integers(0, 2**32 - 1), bias=st.booleans(),
       scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_every_backend_matches_the_float64_reference(dtype, n, dim, k, seed, bias, scale):
    rng = np.random.default_rng(seed)
    emb = unit_rows(rng, n, dim) * np.float32(scale)
    table = rankcore.ItemTable(emb, rng.standard_normal(n) if bias else None, dtype=dtype)
    user = rng.standard_normal(dim).astype(np.float32)
    cands = rng.integers(0, n, int(rng.integers(0, 60)))
    want = ref_logits(table, user, cands)
    for be in BACKENDS:
        s = rankcore.score(user, table, cands, backend=be)
        close(s.logits, want, user, table, cands)
        r = rankcore.rank(user, table, cands, k=k, backend=be)
        assert len(r.items) == min(k, len(cands))
        assert np.all(np.diff(r.scores) <= 0)
        np.testing.assert_array_equal(np.sort(cands[r.positions]), np.sort(r.items))


@pytest.mark.parametrize("dtype", COMPRESSED)
@pytest.mark.parametrize("be", BACKENDS)
def test_backends_batch_padding_and_bad_candidates(dtype, be):
    rng = np.random.default_rng(3)
    table = rankcore.ItemTable(unit_rows(rng, 30, 12), dtype=dtype)
    users = rng.standard_normal((2, 12)).astype(np.float32)
    cands = np.array([[3, -1, 7, 3], [29, 0, -1, -1]])
    s = rankcore.score_batch(users, table, cands, backend=be)
    assert s.scores[0, 1] == 0 and s.logits[1, 3] == -np.inf
    close(s.logits[0, [0, 2, 3]], ref_logits(table, users[0], np.array([3, 7, 3])), users[0], table,
          np.array([3, 7, 3]))
    r = rankcore.rank_batch(users, table, cands, k=2, backend=be)
    assert list(r.offsets) == [0, 2, 4]
    with pytest.raises(IndexError, match="candidate 30 out of range for an item table of 30 rows"):
        rankcore.rank(users[0], table, [1, 30], backend=be)
    got = topk(users[0], table, 5, backend=be)
    want = topk(users[0], table, 5, backend="numpy")
    np.testing.assert_allclose(got.logits, want.logits, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- tables

@pytest.mark.parametrize("dtype", quantize.DTYPES)
def test_layout_bytes_and_from_padded(dtype, tmp_path):
    rng = np.random.default_rng(0)
    emb = unit_rows(rng, 100, 40)
    t = rankcore.ItemTable(emb, dtype=dtype)
    assert t.dtype == dtype and t.data.dtype == quantize.STORAGE[dtype]
    assert t.data.ctypes.data % 64 == 0 and (t.padded_dim * t.data.itemsize) % 64 == 0
    assert t.padded_dim == {"float32": 48, "float16": 64, "bfloat16": 64, "int8": 64}[dtype]
    assert not t.data.flags.writeable and np.all(t.data[:, 40:] == 0)
    extra = 400 if dtype == "int8" else 0
    assert t.nbytes == 100 * t.padded_dim * t.data.itemsize + extra
    assert t.embeddings.dtype == np.float32 and t.embeddings.shape == (100, 40)
    np.save(tmp_path / "t.npy", t.data)
    mapped = np.load(tmp_path / "t.npy", mmap_mode="r")
    back = rankcore.ItemTable.from_padded(mapped, 40, dtype=dtype, row_scale=t.row_scale, check_finite=True)
    user = rng.standard_normal(40).astype(np.float32)
    np.testing.assert_array_equal(rankcore.score(user, back, np.arange(100)).logits,
                                  rankcore.score(user, t, np.arange(100)).logits)


def test_quantisation_rules():
    x = np.array([[1.0, -0.5, 0.25, 0.0], [0, 0, 0, 0], [3.0, 1.5, -1.5, 0.011]], dtype=np.float32)
    q, s = quantize.quantize_rows(x, "int8")
    assert s[1] == 0 and np.all(q[1] == 0)
    assert q[0].tolist() == [127, -64, 32, 0]  # -63.5 and 31.75: round half to even, then nearest
    assert np.abs(q).max() == 127
    np.testing.assert_allclose(quantize.dequantize(q, s), x, atol=s.max() / 2 * 1.0001)
    b, _ = quantize.quantize_rows(np.array([[1.00390625, 1.01171875, -2.0]], dtype=np.float32), "bfloat16")
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1.0); 1 + 3 * 2^-8 rounds up to 1 + 2^-6
    assert quantize.dequantize(b).tolist() == [[1.0, 1.015625, -2.0]]


@pytest.mark.parametrize("dtype", quantize.DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_tables_are_the_same_value_error(dtype, bad):
    emb = np.ones((3, 4), dtype=np.float32)
    emb[1, 2] = bad
    with pytest.raises(ValueError, match="embeddings contain NaN or inf"):
        rankcore.ItemTable(emb, dtype=dtype)


def test_bad_tables():
    big = np.full((2, 3), 1e5, dtype=np.float32)
    with pytest.raises(ValueError, match="float16 range"):
        rankcore.ItemTable(big, dtype="float16")
    with pytest.raises(ValueError, match="bfloat16 range"):
        rankcore.ItemTable(np.full((1, 2), 3.4e38, dtype=np.float32), dtype="bfloat16")
    with pytest.raises(ValueError, match="unknown item table dtype 'int4'"):
        rankcore.ItemTable(big, dtype="int4")
    with pytest.raises(TypeError, match="dtype must be one of"):
        rankcore.ItemTable(big, dtype=np.int8)
    t = rankcore.ItemTable(big, dtype="int8")
    with pytest.raises(ValueError, match="needs row_scale"):
        rankcore.ItemTable.from_padded(t.data, 3, dtype="int8")
    with pytest.raises(ValueError, match="row_scale contains NaN"):
        rankcore.ItemTable.from_padded(t.data, 3, dtype="int8", row_scale=np.array([1, np.nan], np.float32))
    with pytest.raises(ValueError, match="only for int8"):
        rankcore.ItemTable.from_padded(rankcore.ItemTable(big).data, 3, row_scale=t.row_scale)
    with pytest.raises(TypeError, match="float16 numpy array"):
        rankcore.ItemTable.from_padded(t.data, 3, dtype="float16")
    with pytest.raises(ValueError, match="not a padded int8 table"):
        rankcore.ItemTable.from_padded(np.zeros((2, 32), np.int8), 3, dtype="int8", row_scale=t.row_scale)
    h = aligned_zeros(2, 32, np.float16)
    h[1, 1] = np.inf
    with pytest.raises(ValueError, match="contains NaN or inf"):
        rankcore.ItemTable.from_padded(h, 3, dtype="float16", check_finite=True)
    user = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="an int8 table needs row_scale"):
        _core.score(user, t.data, None, 3, np.zeros(1, np.int64), None, False, 1)
    with pytest.raises(ValueError, match="row_scale is only for int8 tables, got a float16 table"):
        _core.score(user, h, None, 3, np.zeros(1, np.int64), None, False, 1, row_scale=t.row_scale)
    with pytest.raises(TypeError, match="float32, float16, uint16 \\(bfloat16 bits\\) or int8"):
        _core.rank(user, t.data.view(np.uint8), None, 3, np.zeros(1, np.int64), None, False, -1, 1)
    with pytest.raises(ValueError, match="row_scale has 1 entries"):
        _core.topk(user, t.data, None, 3, 1, None, None, None, 1.0, 1, row_scale=t.row_scale[:1])


def test_nan_in_a_mapped_table_is_a_value_error_not_a_nan():
    h = aligned_zeros(3, 32, np.float16)
    h[2, 0] = np.nan
    t = rankcore.ItemTable.from_padded(h, 3, dtype="float16")  # unchecked, as a mapped file may be
    for be in BACKENDS:
        with pytest.raises(ValueError, match="non-finite logit"):
            rankcore.score(np.ones(3, np.float32), t, [0, 2], backend=be)


def test_build_info_lists_the_kernels():
    info = rankcore.build_info()
    funcs = info["native"]["kernel_functions"]
    assert info["native"]["table_dtypes"] == ["float32", "float16", "bfloat16", "int8"]
    for k in _core.available_kernels():
        for dt in COMPRESSED:
            assert f"{k}/gather_{dt}" in funcs and f"{k}/topk_{dt}" in funcs


# --------------------------------------------------------------------------- fidelity

#: Lower bounds of the mean top-10 overlap with the float32 ranking (README, "Compressed item tables").
OVERLAP = {"float16": 0.99, "bfloat16": 0.99, "int8": 0.97}
#: Upper bounds of the largest logit error against float32 on unit-scale data (|row| ~ 1, |user| ~ 1).
MAX_ERROR = {"float16": 5e-4, "bfloat16": 4e-3, "int8": 1.2e-2}


def overlap10(table32, table, users):
    a = topk_batch(users, table32, 10, backend="cpp")
    b = topk_batch(users, table, 10, backend="cpp")
    return float(np.mean([len(set(a[i].items) & set(b[i].items)) / 10 for i in range(len(users))]))


@pytest.mark.parametrize("dtype", COMPRESSED)
def test_fidelity_unit_scale_error(dtype):
    rng = np.random.default_rng(5)
    d = 64
    emb = unit_rows(rng, 20000, d)
    users = (rng.standard_normal((50, d)) / np.sqrt(d)).astype(np.float32)
    t32, t = rankcore.ItemTable(emb), rankcore.ItemTable(emb, dtype=dtype)
    cands = np.tile(np.arange(2000), (50, 1))
    err = np.abs(rankcore.score_batch(users, t, cands).logits - rankcore.score_batch(users, t32, cands).logits)
    assert err.max() < MAX_ERROR[dtype]


@pytest.mark.parametrize("dtype", COMPRESSED)
def test_fidelity_top10_on_the_synthetic_model(dtype):
    model = synthetic(n_users=200, n_items=20000, dim=64, seed=1, with_context=False, with_metadata=False,
                      with_history=False)
    t32 = model.item_table
    t = rankcore.ItemTable(t32.embeddings, t32.bias, dtype=dtype)
    assert overlap10(t32, t, model.user_embeddings[:200]) >= OVERLAP[dtype]


@pytest.mark.parametrize("dtype", COMPRESSED)
def test_fidelity_top10_on_an_als_model(dtype, tmp_path):
    pytest.importorskip("implicit.cpu.als")
    data = synthetic_interactions(tmp_path, n_users=600, n_items=400, n_genres=6, interactions_per_user=15,
                                  seed=4)
    model = train(data["interactions"], data["items"], data["users"], factors=32, iterations=8, seed=1,
                  progress=False)
    t32 = model.item_table
    t = rankcore.ItemTable(t32.embeddings, t32.bias, dtype=dtype)
    assert overlap10(t32, t, model.user_embeddings) >= OVERLAP[dtype]


# --------------------------------------------------------------------------- storage and CLI

@pytest.mark.parametrize("dtype", COMPRESSED)
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(dtype, mmap, tmp_path):
    model = synthetic(n_users=20, n_items=300, dim=24, seed=2, item_bias=True)
    model.save(tmp_path / "m", dtype=dtype)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["item_dtype"] == dtype and manifest["padded_dim"] == quantize.padded_dim(24, dtype)
    assert ("item_scale.npy" in manifest["files"]) == (dtype == "int8")
    back = load_model(tmp_path / "m", mmap=mmap, verify=True)
    held = rankcore.ItemTable(model.item_table.embeddings, model.item_table.bias, dtype=dtype)
    assert back.item_table.dtype == dtype
    np.testing.assert_array_equal(back.item_table.data, held.data)
    user = model.user_embeddings[3]
    np.testing.assert_array_equal(rankcore.score(user, back.item_table, np.arange(300)).logits,
                                  rankcore.score(user, held, np.arange(300)).logits)
    back.save(tmp_path / "again")  # kept as held
    assert load_model(tmp_path / "again").item_table.dtype == dtype
    back.save(tmp_path / "f32", dtype="float32")
    np.testing.assert_array_equal(load_model(tmp_path / "f32").item_table.embeddings, held.embeddings)


def test_manifest_dtype_checks(tmp_path):
    model = synthetic(n_users=5, n_items=50, dim=8, seed=2)
    model.save(tmp_path / "m", dtype="int8")
    mpath = tmp_path / "m" / "manifest.json"
    good = json.loads(mpath.read_text())
    for change, message in [({"item_dtype": "int4"}, "unknown item_dtype 'int4'"),
                            ({"item_dtype": 8}, "'item_dtype' must be a str"),
                            ({"item_dtype": "float16"}, "inconsistent sizes"),
                            ({"padded_dim": 16}, "inconsistent sizes")]:
        mpath.write_text(json.dumps(dict(good, **change)))
        with pytest.raises(ModelFormatError, match=message):
            load_model(tmp_path / "m")
    files = dict(good["files"])
    del files["item_scale.npy"]
    mpath.write_text(json.dumps(dict(good, files=files)))
    with pytest.raises(ModelFormatError, match="item_scale.npy: missing from the manifest"):
        load_model(tmp_path / "m")


def test_quantize_and_info_commands(tmp_path, capsys):
    model = synthetic(n_users=5, n_items=500, dim=64, seed=2)
    model.save(tmp_path / "src")
    assert cli_main(["quantize", str(tmp_path / "src"), str(tmp_path / "dst"), "--dtype", "int8"]) == 0
    assert "float32 -> int8, 128000 -> 34000 bytes" in capsys.readouterr().out
    assert load_model(tmp_path / "dst").item_table.dtype == "int8"
    assert cli_main(["info", str(tmp_path / "dst"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dtype"] == "int8" and info["item_table_bytes"] == 34000
    assert cli_main(["quantize", str(tmp_path / "src"), str(tmp_path / "dst"), "--dtype", "int8"]) == 1
    assert "already holds a model" in capsys.readouterr().err
    assert cli_main(["quantize", str(tmp_path / "src"), str(tmp_path / "x"), "--dtype", "int4"]) == 2
    assert "invalid choice: 'int4'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
def test_fold_in_related_items_and_events_on_compressed_tables(dtype, tmp_path):
    """Fold-in, related items and the logit scale read float rows of a compressed table, never
    its raw stored codes."""
    from rankcore.train.temperature import with_logit_scale

    model = rankcore.datasets.synthetic(n_users=20, n_items=300, dim=16, seed=2, item_bias=True)
    model.training["regularization"] = 0.01
    model.save(tmp_path / "m", dtype=dtype)
    small = rankcore.load_model(tmp_path / "m")
    assert small.item_table.dtype == dtype
    want = model.fold_in(["1", "2", "3"])
    got = small.fold_in(["1", "2", "3"])
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)
    rows = small.item_table.vectors[[4, 9]]
    np.testing.assert_allclose(rows, model.item_table.embeddings[[4, 9]], rtol=0.05, atol=0.05)
    related = rankcore.Campaign(small).recommend(item_id="4", k=10)
    exact = rankcore.Campaign(model).recommend(item_id="4", k=10)
    assert len(set(related.item_ids) & set(exact.item_ids)) >= 8
    scaled = with_logit_scale(small, 2.0)
    assert scaled.item_table.dtype == dtype
