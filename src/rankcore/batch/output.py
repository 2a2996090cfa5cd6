"""Writing a batch job's output so that a file or directory named OUTPUT is always complete.

A file is written to ``PATH.tmp-<uuid>`` beside ``PATH`` and renamed to ``PATH`` once complete; on
an error or an interrupt the temporary file is removed. With part files, OUTPUT is a directory of
``part-NNNNN.jsonl`` files (each written the same way, so a retried task never leaves two copies)
and ``_manifest.json``, written last, listing the parts with their line counts and
``"complete": true``; the directory is built under a temporary name and renamed at the end.
Only the parts the manifest lists are moved into the finished directory (a worker killed while it
wrote leaves a ``part-NNNNN.jsonl.tmp-*`` behind in the working directory), and a directory is
discarded by renaming it first, so that a task still running elsewhere cannot add a file to it.
"""
from __future__ import annotations

import os
import shutil
import uuid
from typing import Callable

from ..errors import BatchError
from .lines import _orjson

MANIFEST_NAME = "_manifest.json"


def _temporary_name(path: str) -> str:
    return f"{path}.tmp-{uuid.uuid4().hex}"


def _write_atomically(path: str, fill: Callable) -> None:
    """Call ``fill(file)`` on ``path.tmp-<uuid>`` and rename it to ``path``; remove it on failure."""
    tmp = _temporary_name(path)
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            _discard_dir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _discard_dir(path: str) -> None:
    """Remove the directory ``path``. It is renamed first: a task still running on a worker names
    its files by the old path, so after the rename it can no longer add one (a file created while
    ``rmtree`` runs would otherwise survive it, and the directory with it)."""
    trash = _temporary_name(path)
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def _manifest(partitions: list, results: list, totals: tuple) -> bytes:
    parts = [{"file": p.part_name, "lines": r["lines"], "failed": r["failed"], "items": r["items"],
              "input": p.path, "start": p.start, "end": p.end} for p, r in zip(partitions, results)]
    doc = {"format": "rankcore-batch-output", "version": 1, "complete": True,
           "lines": totals[0], "failed": totals[1], "items": totals[2], "parts": parts}
    orjson = _orjson()
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _finish_parts(tmp_dir: str, output: str, partitions: list, results: list, totals: tuple) -> None:
    """Move the parts of ``partitions`` from ``tmp_dir`` into a new directory with the manifest,
    rename it to ``output`` and discard ``tmp_dir`` with whatever else it holds."""
    final = _temporary_name(output)
    os.mkdir(final)
    try:
        for p in partitions:
            os.rename(os.path.join(tmp_dir, p.part_name), os.path.join(final, p.part_name))

        def fill(f):
            f.write(_manifest(partitions, results, totals))

        _write_atomically(os.path.join(final, MANIFEST_NAME), fill)
        if os.path.exists(output):
            raise BatchError(f"output {output!r} appeared while the job ran; nothing was written")
        os.rename(final, output)
    except BaseException:
        _discard_dir(final)
        raise
    _discard_dir(tmp_dir)
