"""The on-disk form of :class:`rankcore.model.ann.AnnIndex`: ``ann.<kind>.faissindex`` files and
the sidecar ``ann.json`` that records, per kind, the file's SHA-256 and size, the build
parameters, the catalog's size and dimension, and a fingerprint of the indexed rows."""
from __future__ import annotations

import json
import os

from ..errors import ModelFormatError
from .ann_build import faiss_module as _faiss
from .ann_build import sample_rows
from .storage import sha256_file

__all__ = ["NORM_SAMPLE", "SIDECAR", "save_index", "read_index"]

SIDECAR = "ann.json"
SIDECAR_FORMAT = "rankcore-ann"
SIDECAR_VERSION = 1
#: Rows of the fixed uniform sample the normaliser estimate reads (``AnnIndex.log_normalizer``).
NORM_SAMPLE = 8192
#: Kind read when several are saved and none is asked for: the one that serves 2M-row catalogs
#: within the latency target (``docs/performance.md``).
PREFERRED = ("ivf", "hnsw")


def save_index(ann, model_dir) -> str:
    """Write ``ann``'s index file and its sidecar entry (each via a temporary name and a rename,
    the sidecar last); returns the index file's path."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory {model_dir!r} does not exist")
    name = f"ann.{ann.kind}.faissindex"
    path = os.path.join(model_dir, name)
    tmp = f"{path}.tmp-{os.getpid()}"
    _faiss().write_index(ann.index, tmp)
    os.replace(tmp, path)
    side = os.path.join(model_dir, SIDECAR)
    try:
        with open(side) as f:
            doc = json.load(f)
        entries = doc["indexes"] if doc.get("format") == SIDECAR_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = {}
    entries[ann.kind] = {"file": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
                         "kind": ann.kind, "params": ann.params, "n_items": ann.n_items,
                         "dim": ann.dim, "fingerprint": ann._fingerprint()}
    doc = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "indexes": entries}
    tmp = f"{side}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, side)
    return path


def _entry(model_dir: str, kind):
    """(kind, sidecar entry) for ``kind`` (None: the preferred saved kind)."""
    side = os.path.join(model_dir, SIDECAR)
    try:
        with open(side) as f:
            doc = json.load(f)
        entries = doc["indexes"]
        if doc.get("format") != SIDECAR_FORMAT or not isinstance(entries, dict):
            raise ValueError("not a rankcore-ann sidecar")
    except FileNotFoundError:
        raise ModelFormatError(f"{side}: no approximate index saved (run `rankcore index`)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelFormatError(f"{side}: unreadable ({e})") from None
    if kind is None:
        kind = next((k for k in PREFERRED if k in entries), next(iter(entries), None))
    if kind not in entries:
        raise ModelFormatError(f"{side}: no {kind!r} index saved (have {sorted(entries)})")
    return kind, entries[kind]


def read_index(model_dir, model, kind, mmap: bool, verify: bool):
    """Read one saved index for ``model`` (see ``AnnIndex.load``).

    Returns ``(faiss index, kind, params, sample rows, mmapped, recorded fingerprint, path)``.
    """
    model_dir = os.fspath(model_dir)
    kind, e = _entry(model_dir, kind)
    path = os.path.join(model_dir, str(e.get("file", "")))
    if not os.path.isfile(path):
        raise ModelFormatError(f"{path}: index file missing")
    if (e.get("n_items"), e.get("dim")) != (model.n_items, model.dim):
        raise ModelFormatError(f"{path}: index of {e.get('n_items')} items x {e.get('dim')} does "
                               f"not match the model ({model.n_items} x {model.dim})")
    if os.path.getsize(path) != e.get("bytes"):
        raise ModelFormatError(f"{path}: size {os.path.getsize(path)} != {e.get('bytes')} recorded")
    if verify and sha256_file(path) != e.get("sha256"):
        raise ModelFormatError(f"{path}: SHA-256 mismatch")
    faiss = _faiss()
    index, mmapped = None, False
    try:
        if mmap:
            try:
                flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
                index, mmapped = faiss.read_index(path, flags), True
            except RuntimeError:
                index = None  # this index type cannot be mapped: read it instead
        if index is None:
            index = faiss.read_index(path)
    except RuntimeError as err:
        raise ModelFormatError(f"{path}: unreadable faiss index ({str(err).splitlines()[0]})") from None
    if index.ntotal != model.n_items or index.d != model.dim + 1:
        raise ModelFormatError(f"{path}: holds {index.ntotal} x {index.d - 1}, model is "
                               f"{model.n_items} x {model.dim}")
    params = dict(e.get("params") or {})
    sample = sample_rows(model.n_items, int(params.get("norm_sample", NORM_SAMPLE)),
                         int(params.get("seed", 0)))
    return index, kind, params, sample, mmapped, e.get("fingerprint"), path
