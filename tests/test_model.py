"""Model artifacts: ID indexes, Model.from_arrays, save/load round trips and corrupt directories.

Scope: the model layer only (the kernel has its own tests). Round trips must be bit-identical, so
comparisons here are exact (``np.array_equal`` on the stored arrays, never a tolerance). Every
corrupt-artifact case must raise ``ModelFormatError`` (a ``ValueError``) naming the damaged file.
"""
import json
import os
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import rankcore
from rankcore import ModelFormatError, load_model
from rankcore.model.ids import IdSequence, PyIdIndex, encode_blob, id_index_from_blob, make_id_index, NativeIdIndex
from rankcore.datasets import decimal_id_blob, synthetic

# ----------------------------------------------------------------------------- ID indexes

INDEX_CLASSES = [PyIdIndex] + ([NativeIdIndex] if NativeIdIndex is not None else [])


@pytest.fixture(params=INDEX_CLASSES, ids=lambda c: c.__module__.rsplit(".", 1)[-1])
def index_cls(request):
    return request.param


def test_id_index_api(index_cls):
    ids = ["a", "bb", "", "é✓", "10"]
    idx = index_cls(ids)
    assert len(idx) == 5
    assert idx.lookup(["bb", "zz", "é✓", "a", ""]).tolist() == [1, -1, 3, 0, 2]
    assert idx.lookup(("10",)).dtype == np.int64
    assert idx.get("10") == 4 and idx.get("nope") == -1
    assert "a" in idx and "nope" not in idx
    assert [idx.id_at(i) for i in range(5)] == ids
    data, offsets = idx.blob()
    assert data.dtype == np.uint8 and offsets.dtype == np.int64
    again = index_cls.from_blob(np.asarray(data), np.asarray(offsets))
    assert [again.id_at(i) for i in range(5)] == ids


def test_id_index_rejects_duplicates(index_cls):
    with pytest.raises(ValueError):
        index_cls(["a", "b", "a"])
    data, offsets = encode_blob(["x", "y", "x"])
    with pytest.raises(ValueError):
        index_cls.from_blob(data, offsets)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=8), unique=True, max_size=30), st.lists(st.text(max_size=8), max_size=30))
def test_py_index_matches_dict(ids, queries):
    idx = PyIdIndex(ids)
    ref = {s: i for i, s in enumerate(ids)}
    assert idx.lookup(queries).tolist() == [ref.get(q, -1) for q in queries]
    blob = PyIdIndex.from_blob(*encode_blob(ids))
    assert blob.lookup(queries).tolist() == [ref.get(q, -1) for q in queries]
    fac = id_index_from_blob(*encode_blob(ids))
    assert fac.lookup(queries).tolist() == [ref.get(q, -1) for q in queries]


def test_factory_and_blob_checks():
    idx = make_id_index(["1", "2"])
    assert idx.lookup(["2"]).tolist() == [1]
    with pytest.raises(TypeError):
        make_id_index(["1", 2])
    with pytest.raises(ValueError):
        id_index_from_blob(np.zeros(3, np.uint8), np.array([0, 2], np.int64))  # does not end at 3
    with pytest.raises(ValueError):
        id_index_from_blob(np.zeros(3, np.uint8), np.array([0, 2, 1, 3], np.int64))
    with pytest.raises(ValueError):
        id_index_from_blob(np.frombuffer(b"\xff\xfe", np.uint8).copy(), np.array([0, 2], np.int64))
    with pytest.raises(ValueError):  # valid UTF-8 as a whole, but an ID boundary splits "é"
        id_index_from_blob(np.frombuffer("é".encode(), np.uint8).copy(), np.array([0, 1, 2], np.int64))


def test_decimal_blob():
    data, offsets = decimal_id_blob(1234)
    assert PyIdIndex.from_blob(data, offsets).lookup([str(i) for i in range(1234)]).tolist() == list(range(1234))


def test_id_sequence():
    seq = IdSequence(PyIdIndex(["a", "b", "c", "d"]))
    assert len(seq) == 4 and seq[0] == "a" and seq[-1] == "d" and seq[1:3] == ["b", "c"]
    assert list(seq) == ["a", "b", "c", "d"] and seq == ["a", "b", "c", "d"]
    assert "c" in seq and 3 not in seq and seq.index("c") == 2
    with pytest.raises(IndexError):
        seq[4]


# ----------------------------------------------------------------------------- from_arrays

def small_model(**kw):
    rng = np.random.default_rng(0)
    args = dict(item_ids=["a", "b", "c", "d"], item_embeddings=rng.standard_normal((4, 3)),
                user_ids=["u1", "u2"], user_embeddings=rng.standard_normal((2, 3)))
    args.update(kw)
    return rankcore.Model.from_arrays(**args)


def test_from_arrays_basics():
    m = small_model(item_bias=[0.1, 0.2, 0.3, 0.4],
                    context={"device": {"phone": np.ones(3), "tv": np.zeros(3)}})
    assert (m.n_items, m.n_users, m.dim) == (4, 2, 3)
    assert list(m.item_ids) == ["a", "b", "c", "d"] and list(m.user_ids) == ["u1", "u2"]
    assert m.item_table.padded_dim % 16 == 0
    np.testing.assert_allclose(m.cold_start, m.user_embeddings.mean(axis=0), rtol=1e-6)
    assert m.context_fields == ("DEVICE",)
    assert m.user_row("u2") == 1 and m.user_row("zz") == -1
    np.testing.assert_array_equal(m.user_vector("zz", {"DEVICE": "phone"}), m.cold_start + 1)
    assert m.item_rows(["d", "x"]).tolist() == [3, -1]


def test_from_arrays_dataframes():
    items = pd.DataFrame({"ITEM_ID": ["c", "a", "zz"], "genre": ["Drama|Comedy", None, "x"],
                          "PRICE": [1.5, 2.0, 3.0], "SIZE": ["S", "M", "L"]})
    users = pd.DataFrame({"USER_ID": ["u2"], "AGE": [33]})
    inter = pd.DataFrame({"USER_ID": ["u1", "u1", "u2", "nobody", "u1"],
                          "ITEM_ID": ["a", "b", "c", "a", "zz"],
                          "EVENT_TYPE": ["Click", "purchase", "click", "click", "click"],
                          "TIMESTAMP": [20, 10, 5, 1, 3]})
    m = small_model(item_metadata=items, user_metadata=users, interactions=inter)
    assert set(m.item_columns) == {"GENRE", "PRICE", "SIZE"}
    assert m.item_columns["GENRE"].as_strings([0, 1, 2, 3]) == [None, None, "Drama|Comedy", None]
    assert m.item_columns["PRICE"].as_strings([0, 2, 3]) == ["2", "1.5", None]
    assert m.item_columns["SIZE"].as_strings([0, 2]) == ["M", "S"]
    assert m.user_columns["AGE"].as_strings([0, 1]) == [None, "33"]
    rows, events = m.recent_interactions("u1")
    assert rows.tolist() == [1, 0] and events == ["purchase", "click"]  # by time; unknown item dropped
    assert m.recent_interactions("nobody")[0].size == 0


def test_recent_interactions_limit_per_type():
    n = 250
    inter = {"user_id": ["u1"] * n, "item_id": ["a", "b"] * (n // 2),
             "event_type": ["click"] * 200 + ["buy"] * 50, "timestamp": np.arange(n)}
    m = small_model(interactions=inter)
    rows, events = m.recent_interactions("u1")
    assert events.count("click") == 100 and events.count("buy") == 50
    assert rows.tolist() == ([0, 1] * 50) + ([0, 1] * 25)  # clicks 100..199 then the 50 buys


@pytest.mark.parametrize("kw, match", [
    (dict(item_ids=["a", "b", "a", "d"]), "duplicate"),
    (dict(user_ids=["u", "u"]), "duplicate"),
    (dict(item_ids=["a", "b"]), "rows|IDs"),
    (dict(user_embeddings=np.zeros((3, 3))), "rows"),
    (dict(user_embeddings=np.zeros((2, 4))), "dimension"),
    (dict(user_embeddings=np.full((2, 3), np.nan)), "NaN"),
    (dict(item_bias=[1.0, np.inf, 0, 0]), "NaN or infinity"),
    (dict(item_bias=[1.0]), "shape"),
    (dict(cold_start=np.zeros(4)), "cold_start"),
    (dict(item_embeddings=np.zeros(4)), "2-D"),
    (dict(context={"bad field!": {"x": np.zeros(3)}}), "name"),
    (dict(context={"F": {"x": np.zeros(2)}}), "dimension"),
    (dict(item_metadata={"GENRE": ["a", "b"]}), "rows"),
    (dict(interactions={"USER_ID": ["u1"]}), "lack"),
])
def test_from_arrays_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        small_model(**kw)


def test_user_ids_without_embeddings():
    with pytest.raises(ValueError, match="together"):
        rankcore.Model.from_arrays(["a"], np.zeros((1, 2)), user_ids=["u"])
    m = rankcore.Model.from_arrays(["a"], np.ones((1, 2)))
    assert m.n_users == 0 and m.cold_start.tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------- save / load

def assert_models_identical(a, b):
    assert list(a.item_ids) == list(b.item_ids) and list(a.user_ids) == list(b.user_ids)
    assert a.dim == b.dim and a.item_table.padded_dim == b.item_table.padded_dim
    assert np.asarray(a.item_table.data).tobytes() == np.asarray(b.item_table.data).tobytes()
    if a.item_bias is None:
        assert b.item_bias is None
    else:
        assert np.asarray(a.item_bias).tobytes() == np.asarray(b.item_bias).tobytes()
    assert np.asarray(a.user_embeddings).tobytes() == np.asarray(b.user_embeddings).tobytes()
    assert np.asarray(a.cold_start).tobytes() == np.asarray(b.cold_start).tobytes()
    assert set(a.context) == set(b.context)
    for f in a.context:
        assert list(a.context[f].values) == list(b.context[f].values)
        assert a.context[f].vectors.tobytes() == np.asarray(b.context[f].vectors).tobytes()
    for ca, cb in ((a.item_columns, b.item_columns), (a.user_columns, b.user_columns)):
        assert set(ca) == set(cb)
        for name in ca:
            assert ca[name].kind == cb[name].kind and ca[name].manifest() == cb[name].manifest()
            for part, arr in ca[name].to_arrays().items():
                assert np.asarray(arr).tobytes() == np.asarray(cb[name].to_arrays()[part]).tobytes()
    for field in ("offsets", "items", "event_codes", "timestamps"):
        assert np.asarray(getattr(a.history, field)).tobytes() == np.asarray(getattr(b.history, field)).tobytes()
    assert a.history.event_types == b.history.event_types


@settings(max_examples=12, deadline=None)
@given(n_users=st.integers(0, 30), n_items=st.integers(1, 60), dim=st.sampled_from([1, 3, 16, 17]),
       seed=st.integers(0, 2**16), bias=st.booleans(), mmap=st.booleans())
def test_save_load_round_trip_is_bit_identical(n_users, n_items, dim, seed, bias, mmap):
    m = synthetic(n_users, n_items, dim, seed, item_bias=bias, interactions_per_user=5)
    with tempfile.TemporaryDirectory() as d:
        m.save(d)
        back = load_model(d, mmap=mmap, verify=True)
        assert_models_identical(m, back)
        back.save(d)  # saving over the files it has mapped must work
        assert_models_identical(m, load_model(d, mmap=mmap))


def test_round_trip_with_unicode_ids_and_dataframes(tmp_path):
    m = small_model(item_ids=["é", "日本", "a b", ""], item_metadata={"T": ["x", None, "y|z", "w"]},
                    context={"LOC": {"東京": np.ones(3)}})
    m.save(tmp_path)
    back = load_model(tmp_path)
    assert_models_identical(m, back)
    assert back.item_rows(["日本", ""]).tolist() == [1, 3]


def test_loaded_item_table_is_memory_mapped(tmp_path):
    synthetic(10, 500, 32, 0).save(tmp_path)
    m = load_model(tmp_path, mmap=True)
    data = m.item_table.data
    assert not data.flags.writeable and not data.flags.owndata
    m2 = load_model(tmp_path, mmap=False)
    assert_models_identical(m, m2)


@pytest.fixture
def saved(tmp_path):
    m = synthetic(20, 50, 8, 3, item_bias=True)
    m.save(tmp_path)
    return tmp_path


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d, man):
    (d / "manifest.json").write_text(json.dumps(man))


def _rewrite_array(d, name, arr):
    """Replace an array file and patch its manifest entry so only the content is wrong."""
    np.save(d / name, arr)
    man = _manifest(d)
    man["files"][name].update(shape=list(arr.shape), dtype=arr.dtype.str, bytes=os.path.getsize(d / name))
    man["files"][name].pop("sha256", None)
    _write_manifest(d, man)


def _load_fails(d, fragment, **kw):
    with pytest.raises(ModelFormatError) as info:
        load_model(d, **kw)
    assert fragment in str(info.value), str(info.value)
    return info.value


def test_corrupt_manifest(saved):
    (saved / "manifest.json").write_text("{not json")
    _load_fails(saved, "manifest.json")


def test_missing_manifest(tmp_path):
    _load_fails(tmp_path, "manifest.json")


@pytest.mark.parametrize("patch, fragment", [
    ({"version": 2}, "version 2"),
    ({"version": "1"}, "version"),
    ({"format": "other"}, "manifest"),
    ({"dim": "x"}, "manifest"),
    ({"padded_dim": 12}, "padded_dim"),
    ({"files": []}, "files"),
    ({"item_columns": {"BAD NAME": {"kind": "numeric"}}}, "name"),
])
def test_bad_manifest_fields(saved, patch, fragment):
    man = _manifest(saved)
    man.update(patch)
    _write_manifest(saved, man)
    err = _load_fails(saved, fragment)
    assert "manifest.json" in str(err)


def test_model_format_error_is_value_error():
    assert issubclass(ModelFormatError, ValueError)


@pytest.mark.parametrize("name", ["item_embeddings.npy", "item_ids.bytes.npy", "user_embeddings.npy",
                                  "history.items.npy", "item_columns.GENRE.codes.npy", "item_bias.npy"])
def test_truncated_file(saved, name):
    path = saved / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    _load_fails(saved, name)
    _load_fails(saved, name, mmap=False)


def test_truncated_file_with_patched_size(saved):
    """Even when the manifest size is fixed up, np.load's own check is wrapped."""
    name = "item_embeddings.npy"
    data = (saved / name).read_bytes()
    (saved / name).write_bytes(data[:-64])
    man = _manifest(saved)
    man["files"][name]["bytes"] -= 64
    _write_manifest(saved, man)
    _load_fails(saved, name)
    _load_fails(saved, name, mmap=False)


@pytest.mark.parametrize("name", ["item_embeddings.npy", "cold_start.npy", "context.DEVICE.vectors.npy"])
def test_missing_file(saved, name):
    os.remove(saved / name)
    _load_fails(saved, name)


def test_garbage_header(saved):
    name = "user_embeddings.npy"
    data = bytearray((saved / name).read_bytes())
    data[:16] = b"garbage garbage!"
    (saved / name).write_bytes(bytes(data))
    _load_fails(saved, name)


def test_wrong_dtype_and_shape(saved):
    _rewrite_array(saved, "user_embeddings.npy", np.zeros((20, 8), np.float64))
    _load_fails(saved, "user_embeddings.npy")


def test_shape_mismatch_with_manifest_counts(saved):
    _rewrite_array(saved, "user_embeddings.npy", np.zeros((19, 8), np.float32))
    _load_fails(saved, "user_embeddings.npy")


def test_manifest_shape_disagrees_with_file(saved):
    man = _manifest(saved)
    man["files"]["cold_start.npy"]["shape"] = [9]
    _write_manifest(saved, man)
    _load_fails(saved, "cold_start.npy")


def test_duplicate_item_ids(saved):
    data, offsets = encode_blob(["1", "1"] + [str(i) for i in range(2, 50)])
    _rewrite_array(saved, "item_ids.bytes.npy", data)
    _rewrite_array(saved, "item_ids.offsets.npy", offsets)
    _load_fails(saved, "item_ids.bytes.npy")


def test_bad_id_offsets(saved):
    offsets = np.load(saved / "user_ids.offsets.npy")
    offsets[3], offsets[4] = offsets[4], offsets[3] + 100
    _rewrite_array(saved, "user_ids.offsets.npy", offsets)
    _load_fails(saved, "user_ids")


@pytest.mark.parametrize("name", ["user_embeddings.npy", "cold_start.npy", "item_bias.npy",
                                  "context.DEVICE.vectors.npy", "history.timestamps.npy"])
def test_nan_in_small_arrays(saved, name):
    arr = np.load(saved / name).copy()
    arr.reshape(-1)[0] = np.nan
    _rewrite_array(saved, name, arr)
    _load_fails(saved, name)


def test_nan_in_item_table_needs_verify(saved):
    arr = np.load(saved / "item_embeddings.npy").copy()
    arr[5, 0] = np.nan
    _rewrite_array(saved, "item_embeddings.npy", arr)
    load_model(saved)  # not scanned by default (the kernel refuses non-finite logits)
    _load_fails(saved, "item_embeddings.npy", verify=True)


def test_checksum_mismatch_needs_verify(saved):
    name = "item_embeddings.npy"
    data = bytearray((saved / name).read_bytes())
    data[-1] ^= 0x01
    (saved / name).write_bytes(bytes(data))
    load_model(saved)
    _load_fails(saved, "checksum", verify=True)


@pytest.mark.parametrize("name, value", [
    ("history.items.npy", 50), ("history.items.npy", -1), ("history.event_codes.npy", 9),
    ("item_columns.GENRE.codes.npy", 99)])
def test_out_of_range_indices(saved, name, value):
    arr = np.load(saved / name).copy()
    arr[0] = value
    _rewrite_array(saved, name, arr)
    _load_fails(saved, name.rsplit(".", 2)[0])


def test_bad_history_offsets(saved):
    off = np.load(saved / "history.offsets.npy").copy()
    off[-1] += 1
    _rewrite_array(saved, "history.offsets.npy", off)
    _load_fails(saved, "history.offsets.npy")


def test_unknown_column_kind(saved):
    man = _manifest(saved)
    man["item_columns"]["GENRE"]["kind"] = "tensor"
    _write_manifest(saved, man)
    _load_fails(saved, "item_columns.GENRE")


def test_pickled_object_array_is_refused(saved):
    name = "item_ids.bytes.npy"
    np.save(saved / name, np.array(["x"], dtype=object), allow_pickle=True)
    man = _manifest(saved)
    man["files"][name]["bytes"] = os.path.getsize(saved / name)
    _write_manifest(saved, man)
    _load_fails(saved, name)


# ----------------------------------------------------------------------------- synthetic data

def test_synthetic_structure():
    m = synthetic(200, 3000, 32, seed=5)
    assert m.item_ids[17] == "17" and m.user_ids[3] == "3"
    assert set(m.item_columns) == {"GENRE", "PRICE", "CREATION_TIMESTAMP"}
    assert set(m.user_columns) == {"AGE"} and m.context_fields == ("DEVICE",)
    assert set(m.history.event_types) == {"click", "watch", "purchase"}
    genre = m.item_columns["GENRE"]
    # planted structure: a user's top items mostly share the genre most common in its history
    agree = 0
    for u in range(50):
        rows, _ = m.recent_interactions(str(u))
        codes = np.concatenate([genre.codes[genre.offsets[r]:genre.offsets[r + 1]] for r in rows])
        fav = np.bincount(codes).argmax()
        logits = np.asarray(m.item_table.data)[:, :m.dim] @ m.user_embeddings[u]
        top = np.argsort(-logits)[:10]
        agree += np.mean(genre.any_in(top, np.array([fav], np.int32)))
    assert agree / 50 > 0.8
    # deterministic
    assert_models_identical(synthetic(20, 100, 8, seed=1), synthetic(20, 100, 8, seed=1))


def test_synthetic_options():
    m = synthetic(5, 10, 4, 0, with_context=False, with_metadata=False, with_history=False)
    assert m.context == {} and m.item_columns == {} and m.history.items.size == 0
    with pytest.raises(ValueError):
        synthetic(5, 10, 4, 0, n_genres=0)
