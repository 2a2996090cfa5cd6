"""Batch inference (rankcore.batch): format, per-line errors, engines, output safety, CLI.

The reference for every good line is ``Campaign.rank`` on the same request, scores rounded to 7
decimals (what the batch output promises). Local mode, every chunk/partition size and Dask (in
process, and one LocalCluster with worker processes) must produce byte-identical files. Out of
scope here: throughput (benches/bench_batch.py) and the kernels' numerics (test_core/parity).
Dask clusters are small (2 workers, 1 thread each), on 127.0.0.1, dashboard off.
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

import rankcore
from rankcore import Campaign, batch
from rankcore.batch import chunks, local
from rankcore.datasets import synthetic
from rankcore.filters import compile_filter

N_ITEMS = 2000
# the directory the imported rankcore comes from (src/ in development, site-packages when
# installed), so subprocesses run the same build, native extension included
SRC = os.path.dirname(os.path.dirname(os.path.abspath(rankcore.__file__)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m"
    synthetic(n_users=200, n_items=N_ITEMS, dim=16, seed=3).save(path)
    return str(path)


@pytest.fixture(scope="module")
def campaign(model_dir):
    return Campaign(rankcore.load_model(model_dir, mmap=True))


def make_lines(n: int, seed: int = 0) -> tuple:
    """``(lines, bad)``: JSON Lines text lines (no newline) and the indices of bad lines."""
    rng = np.random.default_rng(seed)
    lines, bad = [], set()
    bad_kinds = ['{"userId": "1", "itemList": ["1", "2"]',  # truncated JSON
                 '{"itemList": ["1"]}',  # missing userId
                 '{"userId": "1"}',  # missing itemList
                 '{"userId": 7, "itemList": ["1"]}',  # userId not a string
                 '{"userId": "1", "itemList": "1,2"}',  # itemList not a list
                 '{"userId": "1", "itemList": ["1", 2]}',  # item not a string
                 '{"userId": "1", "itemList": ["1"], "context": {"NOPE": "x"}}',  # unknown field
                 '{"userId": "1", "itemList": ["1"], "context": ["DEVICE"]}',  # context not a map
                 '["userId", "itemList"]',  # not an object
                 '',  # blank line
                 'not json at all \u00e9']
    for i in range(n):
        if i % 9 == 4:
            lines.append(bad_kinds[(i // 9) % len(bad_kinds)])
            bad.add(i)
            continue
        k = int(rng.integers(0, 30))
        items = [str(x) for x in rng.integers(0, N_ITEMS + 40, k)]  # some unknown, some repeated
        user = str(rng.integers(0, 260))  # some unknown users (cold start)
        obj = {"userId": user, "itemList": items}
        if i % 5 == 0:
            obj["context"] = {"DEVICE": ["tablet", "desktop", "fridge"][i % 3]}
        if i % 7 == 0:
            obj["extra"] = {"kept": True}
        lines.append(json.dumps(obj))
    return lines, bad


def expected(campaign, line: str) -> dict:
    obj = json.loads(line)
    r = campaign.rank(obj["userId"], obj["itemList"], context=obj.get("context"))
    scores = np.round(r.scores.astype(np.float64), 7).tolist() + [None] * len(r.unknown_item_ids)
    return {"input": obj, "output": {"recommendedItems": r.item_ids, "scores": scores},
            "error": None}


def write_input(path, lines, trailing_newline=True) -> str:
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    path.write_text(text, encoding="utf-8")
    return str(path)


def leftovers(directory) -> list:
    return sorted(p for p in os.listdir(directory) if ".tmp-" in p)


# --------------------------------------------------------------------------- the core
def test_rank_lines_matches_campaign_rank_line_by_line(campaign):
    lines, bad = make_lines(300)
    out = batch.rank_lines(campaign, lines, chunk_size=64)
    assert len(out) == len(lines)
    for i, (line, o) in enumerate(zip(lines, out)):
        got = orjson.loads(o)
        assert list(got) == ["input", "output", "error"]
        if i in bad:
            assert got["output"] is None and isinstance(got["error"], str) and got["error"]
            try:
                assert got["input"] == json.loads(line)
            except ValueError:
                assert got["input"] == line  # not JSON: the text itself
        else:
            assert got == expected(campaign, line), i


def test_bad_line_messages(campaign):
    out = [orjson.loads(o) for o in batch.rank_lines(campaign, [
        '{"itemList": ["1"]}', '{"userId": "1", "itemList": ["1", 2]}', "", "{oops",
        '{"userId": "1", "itemList": ["1"], "context": {"NOPE": "x"}}'])]
    errors = [o["error"] for o in out]
    assert "userId" in errors[0]
    assert "itemList" in errors[1] and "number" in errors[1]
    assert errors[2] == "empty line"
    assert errors[3].startswith("invalid JSON") and out[3]["input"] == "{oops"
    assert "NOPE" in errors[4]


@pytest.mark.parametrize("others", [0, 40])  # alone, or in a chunk of good lines (lean path)
def test_bare_string_item_list_is_a_failed_line(campaign, others):
    good = [json.dumps({"userId": "1", "itemList": ["3", "4", "10"]})] * others
    lines = good + ['{"userId": "12", "itemList": "3410"}'] + good
    out = [orjson.loads(o) for o in batch.rank_lines(campaign, lines)]
    bad = out[others]
    assert bad["output"] is None and bad["input"]["itemList"] == "3410"
    assert "'itemList' must be a list of strings, got a string" == bad["error"]
    assert all(o["error"] is None for i, o in enumerate(out) if i != others)


def test_semantics_unknown_duplicates_cold_start_empty(campaign):
    (o,) = batch.rank_lines(campaign, ['{"userId": "no-such-user", "itemList": ["5", "x", "5", "6", "y", "x"]}'])
    got = orjson.loads(o)["output"]
    assert got["recommendedItems"][-2:] == ["x", "y"] and got["scores"][-2:] == [None, None]
    assert sorted(got["recommendedItems"][:2]) == ["5", "6"]
    assert abs(sum(got["scores"][:2]) - 1) < 1e-6
    (e,) = batch.rank_lines(campaign, [b'{"userId": "1", "itemList": []}\n'])
    assert orjson.loads(e) == {"input": {"userId": "1", "itemList": []},
                               "output": {"recommendedItems": [], "scores": []}, "error": None}


def test_one_bad_request_does_not_fail_its_chunk(campaign):
    lines, _ = make_lines(40, seed=5)
    lines = [ln for i, ln in enumerate(lines) if i % 9 != 4]
    lines.insert(17, '{"userId": "1", "itemList": ["1"], "context": {"NOPE": "x"}}')
    out = [orjson.loads(o) for o in batch.rank_lines(campaign, lines, chunk_size=1000)]
    assert [i for i, o in enumerate(out) if o["error"]] == [17]
    assert out[3] == expected(campaign, lines[3])


def _chunk_lines(n: int, seed: int) -> list:
    """Lines for the lean/careful comparisons: every bad kind but non-string items (which send a
    whole chunk down the careful path), duplicates, unknown items and users, contexts."""
    lines, _ = make_lines(n, seed=seed)
    lines = [ln.encode() for ln in lines if '["1", 2]' not in ln]
    rng = np.random.default_rng(seed)
    for i in range(0, len(lines), 11):  # long lists with many duplicates
        items = [str(x) for x in rng.integers(0, 50, 80)] + ["zz", "zz", "yy"]
        lines[i] = json.dumps({"userId": str(i), "itemList": items}).encode()
    return lines


@pytest.mark.parametrize("with_filter", [False, True])
def test_lean_chunk_path_is_byte_identical_to_careful_path(campaign, with_filter):
    lines = _chunk_lines(400, seed=21)
    plan = None
    if with_filter:
        plan = compile_filter("EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE)")
        lines = [ln.replace(b'"itemList"', b'"filterValues": {"GENRE": "\\"Drama\\""}, "itemList"', 1)
                 if i % 3 else ln for i, ln in enumerate(lines)]  # others miss the placeholder
    lean = batch._rank_chunk(campaign, lines, plan)
    careful = batch._rank_chunk_careful(campaign, lines, plan)
    assert lean[1:] == careful[1:]
    assert lean[0] == careful[0]
    assert lean[1] > 0  # some lines failed


def test_non_string_item_falls_back_to_the_careful_path(campaign, monkeypatch):
    lines = _chunk_lines(60, seed=22)
    lines.insert(9, b'{"userId": "1", "itemList": ["1", 2]}')
    calls = []
    real = batch._rank_chunk_careful
    monkeypatch.setattr(chunks, "_rank_chunk_careful", lambda *a: calls.append(1) or real(*a))
    out, failed, _ = batch._rank_chunk(campaign, lines)
    assert calls == [1]
    assert "itemList" in orjson.loads(out[9])["error"]
    assert out == real(campaign, lines)[0]


def test_rank_many_matches_rank(campaign):
    lists = [["5", "x", "5", "6", "y", "x"], [], ["x"], ["7", "7", "7"], [str(i) for i in range(40)]]
    users = ["no-such-user", "1", "2", "3", "4"]
    flat = [i for lst in lists for i in lst]
    bounds = np.cumsum([0] + [len(x) for x in lists])
    order, scores, offsets, unknown, errors = campaign.rank_many(users, flat, bounds)
    assert errors == {}
    for k, (u, lst) in enumerate(zip(users, lists)):
        r = campaign.rank(u, lst)
        a, b = offsets[k], offsets[k + 1]
        assert [flat[p] for p in order[a:b]] == r.scored_item_ids
        np.testing.assert_array_equal(scores[a:b], r.scores)
        assert unknown.get(k, []) == r.unknown_item_ids


@pytest.mark.parametrize("depth", [1, 3])
def test_pipeline_depth_does_not_change_output(tmp_path, model_dir, monkeypatch, depth):
    lines, _ = make_lines(500, seed=23)
    inp = write_input(tmp_path / "in.jsonl", lines)
    batch.run(model_dir, inp, tmp_path / "a.jsonl", chunk_size=13, quiet=True)
    monkeypatch.setattr(local, "_PIPELINE_DEPTH", depth)
    seen = []
    batch.run(model_dir, inp, tmp_path / "b.jsonl", chunk_size=13,
              progress=lambda n, i, b: seen.append(b))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert sum(seen) == os.path.getsize(inp)


# --------------------------------------------------------------------------- partitions
@pytest.mark.parametrize("trailing", [True, False])
def test_partitions_cover_every_line_once(tmp_path, trailing):
    lines = ["", "a", "bb", "", "ccc" * 7, "d", "\u00e9\u00e9", "", "e"]
    path = write_input(tmp_path / "in.jsonl", lines, trailing)
    with open(path, "rb") as f:
        want = f.read().splitlines(keepends=True)
    for size in range(1, 40):
        parts = batch.plan_partitions([path], size)
        got = [ln for p in parts for ln in batch._partition_lines(p)]
        assert got == want, size


# --------------------------------------------------------------------------- local mode
def test_run_local_file_and_sizes(tmp_path, model_dir, campaign):
    lines, bad = make_lines(500, seed=1)
    inp = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    s = batch.run(model_dir, inp, out, quiet=True)
    assert (s.lines, s.failed) == (500, len(bad))
    assert s.items == sum(len(json.loads(lines[i])["itemList"]) for i in range(500) if i not in bad)
    data = out.read_bytes()
    assert data == b"".join(o + b"\n" for o in batch.rank_lines(campaign, lines))
    assert leftovers(tmp_path) == []
    out2 = tmp_path / "out2.jsonl"
    s2 = batch.run(model_dir, inp, out2, chunk_size=7, partition_bytes=777, quiet=True)
    assert s2.partitions > 5 and out2.read_bytes() == data


def test_run_glob_and_parts(tmp_path, model_dir):
    lines, bad = make_lines(200, seed=2)
    (tmp_path / "in").mkdir()
    write_input(tmp_path / "in" / "b.jsonl", lines[100:])
    write_input(tmp_path / "in" / "a.jsonl", lines[:100], trailing_newline=False)
    whole = tmp_path / "whole.jsonl"
    batch.run(model_dir, write_input(tmp_path / "all.jsonl", lines), whole, quiet=True)
    single = tmp_path / "single.jsonl"
    batch.run(model_dir, str(tmp_path / "in" / "*.jsonl"), single, quiet=True)
    assert single.read_bytes() == whole.read_bytes()
    out = tmp_path / "parts"
    s = batch.run(model_dir, str(tmp_path / "in" / "*.jsonl"), out, parts=True,
                  partition_bytes=2000, quiet=True)
    manifest = json.loads((out / batch.MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["lines"] == 200 == s.lines
    assert manifest["failed"] == len(bad)
    files = sorted(p for p in os.listdir(out) if p.startswith("part-"))
    assert files == [p["file"] for p in manifest["parts"]]
    body = b"".join((out / f).read_bytes() for f in files)
    assert body == whole.read_bytes()
    assert [sum(1 for _ in open(out / p["file"], "rb")) for p in manifest["parts"]] == \
        [p["lines"] for p in manifest["parts"]]
    with pytest.raises(batch.BatchError, match="exists"):
        batch.run(model_dir, str(tmp_path / "in" / "*.jsonl"), out, parts=True, quiet=True)
    assert leftovers(tmp_path) == []


def test_run_accepts_model_and_campaign_objects(tmp_path, campaign):
    lines, _ = make_lines(30, seed=4)
    inp = write_input(tmp_path / "in.jsonl", lines)
    batch.run(campaign, inp, tmp_path / "a.jsonl", quiet=True)
    batch.run(campaign.model, inp, tmp_path / "b.jsonl", quiet=True)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_progress_callback_and_bar(tmp_path, model_dir):
    lines, _ = make_lines(100, seed=6)
    inp = write_input(tmp_path / "in.jsonl", lines)
    seen = []
    s = batch.run(model_dir, inp, tmp_path / "o.jsonl", chunk_size=16,
                  progress=lambda n, i, b: seen.append((n, i, b)))
    assert sum(x[0] for x in seen) == 100 and sum(x[1] for x in seen) == s.items
    assert sum(x[2] for x in seen) == os.path.getsize(inp)
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    bar = batch._Progress(1000, stream=stream)
    bar.update(10, 5000, 500)
    bar.close()
    text = stream.getvalue()
    assert "rankcore batch" in text and "50%" in text and "10 lines, 5,000 items" in text


# --------------------------------------------------------------------------- output safety
def test_interrupted_job_leaves_no_output(tmp_path, model_dir, monkeypatch):
    lines, _ = make_lines(300, seed=7)
    inp = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"previous complete result\n")
    real = batch._rank_chunk
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(local, "_rank_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        batch.run(model_dir, inp, out, chunk_size=20, quiet=True)
    assert out.read_bytes() == b"previous complete result\n"  # untouched, never half-replaced
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        batch.run(model_dir, inp, tmp_path / "parts", chunk_size=20, partition_bytes=500,
                  parts=True, quiet=True)
    assert not (tmp_path / "parts").exists()
    assert leftovers(tmp_path) == []


def test_retried_partition_writes_one_part(tmp_path, model_dir):
    lines, _ = make_lines(50, seed=8)
    inp = write_input(tmp_path / "in.jsonl", lines)
    (part,) = batch.plan_partitions([inp], 1 << 20)
    (tmp_path / "p").mkdir()
    a = batch.rank_partition(model_dir, part, part_dir=str(tmp_path / "p"))
    first = (tmp_path / "p" / part.part_name).read_bytes()
    b = batch.rank_partition(model_dir, part, part_dir=str(tmp_path / "p"))
    assert os.listdir(tmp_path / "p") == [part.part_name]
    assert (tmp_path / "p" / part.part_name).read_bytes() == first
    assert a == b and a["lines"] == 50 and a["data"] is None


def _finished_part_in_progress(directory) -> bool:
    return any(name.endswith(".jsonl") for d in leftovers(directory)
               if os.path.isdir(os.path.join(directory, d)) for name in os.listdir(os.path.join(directory, d)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["file", "parts", pytest.param("dask-parts", marks=pytest.mark.slow)])
def test_sigterm_removes_temporary_output(tmp_path, model_dir, mode, sig):
    """SIGTERM, or Ctrl-C (SIGINT to the whole process group, Dask workers included): exit 130,
    "no output written" and no traceback, and nothing left: no OUTPUT, no OUTPUT.tmp-*."""
    if mode == "dask-parts":
        pytest.importorskip("distributed")
    lines, _ = make_lines(4000, seed=9)
    inp = write_input(tmp_path / "in.jsonl", lines * 10)
    out = tmp_path / "out.jsonl"
    extra = {"file": [], "parts": ["--parts", "--partition-size", "64K"],
             "dask-parts": ["--parts", "--partition-size", "64K", "--scheduler", "local"]}[mode]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "rankcore.batch", "--model", model_dir,
                             "--input", inp, "--output", str(out), "--chunk-size", "16", "--quiet",
                             *extra], env=env, stderr=subprocess.PIPE, start_new_session=True)
    started = leftovers if mode == "file" else _finished_part_in_progress
    try:
        deadline = time.monotonic() + 120
        while not started(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started(tmp_path), "the job finished before it could be interrupted"
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted; no output written" in err and b"Traceback" not in err
    time.sleep(0.5)  # a task still running somewhere would add its part now
    assert not out.exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- command line
def cli(*argv) -> int:
    parser = batch.configure_parser(argparse.ArgumentParser(prog="rankcore batch"))
    return batch.main(parser.parse_args([str(a) for a in argv]))


def test_cli_exit_codes(tmp_path, model_dir, capsys):
    good = [json.dumps({"userId": "1", "itemList": ["1", "2", "3"]})] * 5
    inp = write_input(tmp_path / "good.jsonl", good)
    assert cli("--model", model_dir, "--input", inp, "--output", tmp_path / "o.jsonl") == 0
    assert "5 lines (0 failed)" in capsys.readouterr().err
    lines, bad = make_lines(50)
    inp2 = write_input(tmp_path / "mixed.jsonl", lines)
    assert cli("--model", model_dir, "--input", inp2, "--output", tmp_path / "o2.jsonl") == 1
    first = ", ".join(f"{inp2}:{i + 1}" for i in sorted(bad)[:5])
    assert f"({len(bad)} failed: {first}, ...)" in capsys.readouterr().err
    assert cli("--model", model_dir, "--input", inp2, "--output", tmp_path / "o3.jsonl",
               "--quiet") == 1
    assert capsys.readouterr().err == ""  # --quiet: no summary, the status says it
    assert sum(1 for _ in open(tmp_path / "o2.jsonl", "rb")) == 50
    for argv in (["--model", model_dir, "--input", tmp_path / "nope*.jsonl"],
                 ["--model", tmp_path / "no-model", "--input", inp],
                 ["--model", model_dir, "--input", inp, "--chunk-size", "0"],
                 ["--model", model_dir, "--input", inp, "--scheduler", "nonsense"]):
        assert cli(*argv, "--output", tmp_path / "x.jsonl") == 2
        err = capsys.readouterr().err
        assert err.startswith("rankcore batch: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "x.jsonl").exists()


# --------------------------------------------------------------------------- filters
def test_filter_expression_matches_campaign_rank(tmp_path, model_dir, campaign):
    expr = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"
    plan = compile_filter(expr)
    rng = np.random.default_rng(11)
    lines = [json.dumps({"userId": str(u), "itemList": [str(x) for x in rng.integers(0, N_ITEMS, 20)],
                         "filterValues": {"GENRE": '"Comedy","Drama"'}}) for u in range(40)]
    lines.insert(5, json.dumps({"userId": "1", "itemList": ["1", "2"]}))  # placeholder missing
    inp = write_input(tmp_path / "in.jsonl", lines)
    s = batch.run(model_dir, inp, tmp_path / "o.jsonl", filter_expression=expr, quiet=True)
    assert s.failed == 1
    got = [orjson.loads(x) for x in (tmp_path / "o.jsonl").read_bytes().splitlines()]
    assert got[5]["output"] is None and "GENRE" in got[5]["error"]
    for line, g in zip(lines[6:], got[6:]):
        obj = json.loads(line)
        r = campaign.rank(obj["userId"], obj["itemList"], filter=plan,
                          filter_values=obj["filterValues"])
        assert g["output"]["recommendedItems"] == r.item_ids
    assert cli("--model", model_dir, "--input", inp, "--output", tmp_path / "x.jsonl",
               "--filter-expression", "INCLUDE ItemID WHERE") == 2


# --------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = batch.local_cluster(processes=False)  # 2 workers x 1 thread, 127.0.0.1, no dashboard
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_matches_local(tmp_path, model_dir, dask_client):
    lines, bad = make_lines(400, seed=12)
    inp = write_input(tmp_path / "in.jsonl", lines)
    local = tmp_path / "local.jsonl"
    batch.run(model_dir, inp, local, quiet=True)
    dist = tmp_path / "dist.jsonl"
    s = batch.run(model_dir, inp, dist, scheduler=dask_client, partition_bytes=1500,
                  chunk_size=32, quiet=True)
    assert s.partitions > 4 and (s.lines, s.failed) == (400, len(bad))
    assert dist.read_bytes() == local.read_bytes()
    parts = tmp_path / "parts"
    batch.run(model_dir, inp, parts, scheduler=dask_client, partition_bytes=1500, parts=True,
              quiet=True)
    manifest = json.loads((parts / batch.MANIFEST_NAME).read_text())
    assert manifest["complete"] and manifest["lines"] == 400
    assert b"".join((parts / p["file"]).read_bytes() for p in manifest["parts"]) == local.read_bytes()
    assert leftovers(tmp_path) == []


def test_dask_task_failure_leaves_no_output(tmp_path, model_dir, dask_client):
    inp = write_input(tmp_path / "in.jsonl", make_lines(50)[0])
    with pytest.raises(batch.BatchError):  # the filter syntax is checked before any task runs
        batch.run(model_dir, inp, tmp_path / "o.jsonl", scheduler=dask_client,
                  filter_expression="INCLUDE ItemID WHERE", quiet=True)
    with pytest.raises(batch.BatchError, match="model directory"):
        batch.run(str(tmp_path), inp, tmp_path / "o.jsonl", scheduler=dask_client, quiet=True)
    assert not (tmp_path / "o.jsonl").exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_dask_local_cluster_with_processes(tmp_path, model_dir):
    """``--scheduler local``: a LocalCluster of 2 worker processes on 127.0.0.1, dashboard off."""
    pytest.importorskip("distributed")
    lines, bad = make_lines(300, seed=13)
    inp = write_input(tmp_path / "in.jsonl", lines)
    local = tmp_path / "local.jsonl"
    batch.run(model_dir, inp, local, quiet=True)
    env_path = os.environ.get("PYTHONPATH", "")
    if SRC not in env_path.split(os.pathsep):  # worker processes must import this rankcore
        os.environ["PYTHONPATH"] = SRC + (os.pathsep + env_path if env_path else "")
    try:
        assert cli("--model", model_dir, "--input", inp, "--output", tmp_path / "dist.jsonl",
                   "--scheduler", "local", "--partition-size", "2K", "--quiet") == 1
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)
    assert (tmp_path / "dist.jsonl").read_bytes() == local.read_bytes()


def test_collector_threshold_is_restored(tmp_path, model_dir, monkeypatch):
    lines, _ = make_lines(60, seed=24)
    inp = write_input(tmp_path / "in.jsonl", lines)
    before = gc.get_threshold()
    during = []
    real = batch._rank_chunk

    def spy(*a, **k):
        during.append(gc.get_threshold()[0])
        return real(*a, **k)

    monkeypatch.setattr(local, "_rank_chunk", spy)
    batch.run(model_dir, inp, tmp_path / "o.jsonl", chunk_size=16, quiet=True)
    assert during and set(during) == {max(before[0], batch._GC_THRESHOLD0)}
    assert gc.get_threshold() == before


_DYING_WORKER = """
import os, sys
from rankcore import batch
from rankcore.batch import dask as engine, local

model, inp, out, marker = sys.argv[1:5]
real = local.rank_partition


def dying(model, part, **kw):  # a worker killed while it wrote its part, once
    if part.index == 1 and kw.get("part_dir") and not os.path.exists(marker):
        open(marker, "w").close()
        with open(os.path.join(kw["part_dir"], part.part_name + ".tmp-killed"), "wb") as f:
            f.write(b'{"half": "written"}\\n')
        os._exit(1)
    return real(model, part, **kw)


engine.rank_partition = dying
if __name__ == "__main__":
    from distributed import Client
    cluster = batch.local_cluster(n_workers=2)
    client = Client(cluster)
    try:
        s = batch.run(model, inp, out, scheduler=client, partition_bytes=1500, parts=True,
                      quiet=True)
    finally:
        client.close()
        cluster.close()
    print(s.lines, s.partitions)
"""


@pytest.mark.slow
def test_dask_parts_after_a_killed_worker_hold_only_the_manifest_parts(tmp_path, model_dir):
    pytest.importorskip("distributed")
    lines, _ = make_lines(200, seed=14)
    inp = write_input(tmp_path / "in.jsonl", lines)
    script = tmp_path / "dying.py"
    script.write_text(_DYING_WORKER)
    out, marker = tmp_path / "parts", tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), model_dir, inp, str(out), str(marker)],
                          env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert marker.exists()  # a worker did die while it wrote part 1
    manifest = json.loads((out / batch.MANIFEST_NAME).read_text())
    assert sorted(os.listdir(out)) == sorted([batch.MANIFEST_NAME] + [p["file"] for p in manifest["parts"]])
    got = b"".join((out / name).read_bytes() for name in sorted(os.listdir(out)) if name.startswith("part-"))
    assert got.count(b"\n") == len(lines) == manifest["lines"]
    assert leftovers(tmp_path) == []
