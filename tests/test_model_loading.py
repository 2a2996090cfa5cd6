"""Loading hostile or odd model directories: every failure is a ``ModelFormatError``, nothing hangs
or grows without bound, and ``Model.save`` over an older model leaves only the new model's files.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rankcore import ModelFormatError, load_model
from rankcore.datasets import synthetic


@pytest.fixture()
def saved(tmp_path):
    d = tmp_path / "m"
    synthetic(n_users=20, n_items=50, dim=8, seed=0).save(d)
    return d


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _rewrite(d, **changes):
    m = _manifest(d)
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("mmap", [True, False])
def test_manifest_fifo_is_refused_without_waiting(saved, mmap):
    os.remove(saved / "manifest.json")
    os.mkfifo(saved / "manifest.json")  # open() of a FIFO without a writer would block forever
    with pytest.raises(ModelFormatError, match="not a regular file"):
        load_model(saved, mmap=mmap)


def test_manifest_symlink_to_dev_zero_is_refused(saved):
    os.remove(saved / "manifest.json")
    os.symlink("/dev/zero", saved / "manifest.json")  # read() would never end
    with pytest.raises(ModelFormatError, match="not a regular file"):
        load_model(saved)


@pytest.mark.parametrize("mmap", [True, False])
def test_array_fifo_is_refused(saved, mmap):
    os.remove(saved / "cold_start.npy")
    os.mkfifo(saved / "cold_start.npy")
    with pytest.raises(ModelFormatError, match="cold_start.npy: not a regular file"):
        load_model(saved, mmap=mmap)


def test_oversized_manifest_is_refused(saved):
    m = _manifest(saved)
    m["padding"] = "x" * (17 << 20)
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFormatError, match="bytes"):
        load_model(saved)


def test_deeply_nested_manifest(saved):
    (saved / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFormatError, match="nested too deeply"):
        load_model(saved)


@pytest.mark.parametrize("changes, what", [
    (dict(n_items=1e400), "'n_items' must be an int"),      # JSON 1e400 is float infinity
    (dict(n_items="50"), "'n_items' must be an int"),
    (dict(n_items=50.0), "'n_items' must be an int"),
    (dict(dim=True), "'dim' must be an int"),
    (dict(version=True), "unsupported format version True"),
    (dict(has_item_bias="false"), "'has_item_bias' must be a bool"),
    (dict(event_types="purchase"), "'event_types' must be a list"),
    (dict(event_types=[1]), "'event_types' must be a list of strings"),
    (dict(context=[]), "'context' must be a dict"),
])
def test_manifest_types_are_strict(saved, changes, what):
    text = json.dumps({**_manifest(saved), **changes}).replace("Infinity", "1e400")
    (saved / "manifest.json").write_text(text)
    with pytest.raises(ModelFormatError, match=what):
        load_model(saved)


def test_manifest_file_entry_types_are_strict(saved):
    m = _manifest(saved)
    m["files"]["cold_start.npy"]["bytes"] = str(m["files"]["cold_start.npy"]["bytes"])
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFormatError, match="cold_start.npy: malformed manifest entry"):
        load_model(saved)


def test_npy_header_claiming_a_huge_shape(saved):
    """A header that promises 10**15 floats over 32 data bytes: refused before any allocation."""
    import io
    path = saved / "cold_start.npy"
    data = np.load(path).tobytes()
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (10**15,)})
    path.write_bytes(buf.getvalue() + data)
    m = _manifest(saved)
    m["files"]["cold_start.npy"]["bytes"] = path.stat().st_size
    (saved / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFormatError, match="cold_start.npy: cannot read"):
        load_model(saved, mmap=False)


def test_unmapped_load_is_independent_of_the_files(saved):
    m = load_model(saved, mmap=False)
    want = np.array(m.item_table.data, copy=True)
    with open(saved / "item_embeddings.npy", "r+b") as f:
        f.truncate(128)
    assert np.array_equal(m.item_table.data, want)
    assert m.item_table.data.ctypes.data % 64 == 0


def test_save_over_an_older_model_removes_its_files(tmp_path):
    d = tmp_path / "m"
    big = synthetic(n_users=20, n_items=50, dim=8, seed=0, item_bias=True)
    big.save(d)
    assert (d / "item_bias.npy").exists()
    (d / "notes.txt").write_text("not ours")
    (d / "extra.npy").write_bytes(b"not listed by the manifest")
    from rankcore import Model
    small = Model.from_arrays([f"i{k}" for k in range(5)], np.ones((5, 4), np.float32))
    small.save(d)
    listed = set(_manifest(d)["files"]) | {"manifest.json"}
    assert set(os.listdir(d)) == listed | {"notes.txt", "extra.npy"}
    assert "item_bias.npy" not in listed and not any(n.startswith("context.") for n in os.listdir(d))
    assert load_model(d).n_items == 5


def test_save_never_removes_files_outside_the_directory(tmp_path):
    d = tmp_path / "m"
    outside = tmp_path / "victim.npy"
    outside.write_bytes(b"keep")
    synthetic(n_users=5, n_items=10, dim=4, seed=0).save(d)
    m = _manifest(d)
    m["files"]["../victim.npy"] = {"shape": [1], "dtype": "<f4", "bytes": 4}
    (d / "manifest.json").write_text(json.dumps(m))
    synthetic(n_users=5, n_items=10, dim=4, seed=1).save(d)
    assert outside.read_bytes() == b"keep"
