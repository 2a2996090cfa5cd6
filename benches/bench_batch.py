"""Batch inference end to end (JSON Lines file in, JSON Lines file out), group ``batch``.

Rows of the table:

* ``rankcore-local``: ``rankcore.batch.run`` in local mode (orjson, ``Campaign.rank_many``
  over chunks of lines, the native batched kernel on all cores, two chunks in flight);
* ``plain-python``: what a user would write without rankcore, same input and output format:
  ``json.loads`` per line, a ``dict`` from item ID to row, NumPy gather/dot/softmax/argsort per
  line, ``json.dumps`` per line.

Both read the same file and write the same format (scores rounded to 7 decimals, unknown items
last with ``null``), so lines/s and items/s (``benchmark.extra_info``) compare directly. Sizes:
``RANKCORE_BENCH_ITEMS`` items in the model (default 2,000,000, d=64) and ``RANKCORE_BENCH_LINES``
lines (default 4000) of 500 items each. Model building and the baseline's ID dict are set-up, not
timed, and so is opening the model (memory-mapped; a fixed cost per job and per Dask worker,
reported as ``model_load_s``): the figures are the steady-state rate of a long job.

Run: ``pytest benches/bench_batch.py --benchmark-json=bench.json``.
"""
import json
import os
import time

import numpy as np
import pytest

import rankcore
from conftest import BENCH_ITEMS
from rankcore import batch
from rankcore.datasets import synthetic

BENCH_LINES = int(os.environ.get("RANKCORE_BENCH_LINES", "4000"))
ITEMS_PER_LINE = 500
DIM = 64


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    model = synthetic(n_users=20_000, n_items=BENCH_ITEMS, dim=DIM, seed=0, with_history=False)
    model_dir = str(root / "model")
    model.save(model_dir, checksums=False)
    rng = np.random.default_rng(1)
    users = rng.integers(0, 22_000, BENCH_LINES)  # about 10% unknown users (cold start)
    path = root / "input.jsonl"
    with open(path, "w") as f:
        for u in users.tolist():
            items = rng.integers(0, BENCH_ITEMS, ITEMS_PER_LINE).astype(str).tolist()
            f.write(json.dumps({"userId": str(u), "itemList": items}) + "\n")
    return {"root": root, "model_dir": model_dir, "model": model, "input": str(path)}


def plain_python(model, index: dict, users: dict, input_path: str, output_path: str) -> tuple:
    """The baseline: json + dict lookups + NumPy softmax, line by line."""
    emb = np.asarray(model.item_table.embeddings)
    user_emb = np.asarray(model.user_embeddings)
    cold = np.asarray(model.cold_start)
    lines = items = 0
    with open(input_path) as fin, open(output_path, "w") as fout:
        for line in fin:
            req = json.loads(line)
            seen, ids, rows, unknown = set(), [], [], []
            for item in req["itemList"]:
                if item in seen:
                    continue
                seen.add(item)
                row = index.get(item)
                if row is None:
                    unknown.append(item)
                else:
                    ids.append(item)
                    rows.append(row)
            row = users.get(req["userId"])
            u = user_emb[row] if row is not None else cold
            logits = emb[rows] @ u
            e = np.exp(logits - logits.max())
            s = e / e.sum()
            order = np.argsort(-s, kind="stable")
            out = {"recommendedItems": [ids[j] for j in order] + unknown,
                   "scores": np.round(s[order].astype(np.float64), 7).tolist() + [None] * len(unknown)}
            fout.write(json.dumps({"input": req, "output": out, "error": None}) + "\n")
            lines += 1
            items += len(req["itemList"])
    return lines, items


def _record(benchmark, lines: int, items: int) -> None:
    benchmark.extra_info.update({"lines": lines, "items": items, "model_items": BENCH_ITEMS,
                                 "items_per_call": items})
    if benchmark.stats is None:  # --benchmark-disable: the function ran once, untimed
        return
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update({"lines_per_s": lines / mean, "items_per_s": items / mean})


@pytest.mark.benchmark(group="batch")
def test_batch_rankcore_local(benchmark, workload):
    out = str(workload["root"] / "out-rankcore.jsonl")
    t0 = time.perf_counter()
    campaign = rankcore.Campaign(rankcore.load_model(workload["model_dir"], mmap=True))
    load_s = time.perf_counter() - t0
    batch.run(campaign, workload["input"], out, quiet=True)  # warm up: numba, page cache
    summary = benchmark.pedantic(batch.run, args=(campaign, workload["input"], out),
                                 kwargs={"quiet": True}, rounds=3, iterations=1)
    benchmark.extra_info["model_load_s"] = load_s
    assert summary.failed == 0
    benchmark.extra_info["build"] = rankcore.build_info().get("simd_kernel")
    benchmark.extra_info["impl"] = "rankcore-local"
    _record(benchmark, summary.lines, summary.items)


@pytest.mark.benchmark(group="batch")
def test_batch_plain_python(benchmark, workload):
    model = workload["model"]
    index = {s: i for i, s in enumerate(model.item_ids)}
    users = {s: i for i, s in enumerate(model.user_ids)}
    out = str(workload["root"] / "out-plain.jsonl")
    lines, items = benchmark.pedantic(plain_python, args=(model, index, users, workload["input"], out),
                                      rounds=1, iterations=1)
    benchmark.extra_info["impl"] = "plain-python"
    _record(benchmark, lines, items)
    # same rankings as rankcore (orders may differ only between exactly tied scores)
    with open(out, "rb") as f:
        first = json.loads(f.readline())
    (mine,) = batch.rank_lines(rankcore.Campaign(model), [json.dumps(first["input"])])
    assert json.loads(mine)["output"]["scores"][:5] == pytest.approx(first["output"]["scores"][:5], abs=2e-7)
