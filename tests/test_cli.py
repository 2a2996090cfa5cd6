"""The ``rankcore`` command line: demo, rank, info, serve/batch argument handling, and errors.

Most tests call ``rankcore.cli.main(argv)`` in-process (fast); a few run ``python -m rankcore`` as
a subprocess to check the module entry point and that errors never print a traceback. The server
itself is tested in test_server.py.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rankcore
from rankcore import Campaign, Client
from rankcore.cli import build_parser, main
from rankcore.filters import compile_filter
from rankcore.model import load_model

SRC = str(Path(rankcore.__file__).resolve().parent.parent)
ITEMS = ["3", "4", "10", "8", "12", "7"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "rankcore", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["demo", str(path), "--users", "50", "--items", "300", "--dim", "16"]) == 0
    return path


def _reference(demo_dir, **request):
    campaign = Campaign(load_model(demo_dir), name="rankcore")
    response = Client([campaign], max_input_items=None).get_personalized_ranking(
        campaignArn=campaign.arn, **request)
    response.pop("ResponseMetadata")
    return response


def test_demo_then_rank_subprocess(tmp_path):
    path = tmp_path / "demo"
    r = run("demo", str(path), "--users", "20", "--items", "100", "--dim", "8")
    assert r.returncode == 0, r.stderr
    assert (path / "manifest.json").exists()
    r = run("rank", "--model", str(path), "--user-id", "12", "--input-list", *ITEMS)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [e["itemId"] for e in out["personalizedRanking"]] == \
        [e["itemId"] for e in _reference(path, userId="12", inputList=ITEMS)["personalizedRanking"]]
    assert r.stdout.startswith('{\n    "personalizedRanking"')  # the AWS CLI's 4-space layout
    # refuses to overwrite without --force
    r = run("demo", str(path))
    assert r.returncode == 1 and "--force" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra,request_extra", [
    ([], {}),
    (["--context", "DEVICE=desktop"], {"context": {"DEVICE": "desktop"}}),
    (["--metadata-columns", "ITEMS=GENRE,PRICE"], {"metadataColumns": {"ITEMS": ["GENRE", "PRICE"]}}),
    # the JSON forms the AWS CLI takes
    (["--context", '{"DEVICE": "desktop"}'], {"context": {"DEVICE": "desktop"}}),
    (["--metadata-columns", '{"ITEMS": ["GENRE", "PRICE"]}'],
     {"metadataColumns": {"ITEMS": ["GENRE", "PRICE"]}}),
    (["--context", '{"DEVICE": "desktop"}', "--metadata-columns", '{"ITEMS":["GENRE"]}'],
     {"context": {"DEVICE": "desktop"}, "metadataColumns": {"ITEMS": ["GENRE"]}}),
])
def test_rank_matches_client(demo_dir, capsys, extra, request_extra):
    assert main(["rank", "--model", str(demo_dir), "--user-id", "12", "--input-list", *ITEMS,
                 "nope", *extra]) == 0
    out = json.loads(capsys.readouterr().out)
    want = _reference(demo_dir, userId="12", inputList=ITEMS + ["nope"], **request_extra)
    assert out["personalizedRanking"] == want["personalizedRanking"]
    assert out["personalizedRanking"][-1] == {"itemId": "nope"}
    assert out["recommendationId"].startswith("RID-")


def test_rank_with_filter(demo_dir, capsys):
    expr = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"
    assert main(["rank", "--model", str(demo_dir), "--user-id", "12", "--input-list",
                 *[str(i) for i in range(30)], "--filter-expression", expr,
                 "--filter-values", '{"GENRE": "\\"Comedy\\""}', "--metadata-columns", "ITEMS=GENRE"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["personalizedRanking"]
    assert all("Comedy" in e["metadata"]["GENRE"].split("|") for e in out["personalizedRanking"])


@pytest.mark.parametrize("values", [
    ['{"GENRE": "\\"Comedy\\",\\"Drama\\""}'],   # JSON
    ['GENRE="Comedy","Drama"'],                     # KEY=VALUE: the value keeps its commas
])
def test_rank_filter_values_json_or_key_value(demo_dir, capsys, values):
    expr = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"
    items = [str(i) for i in range(40)]
    assert main(["rank", "--model", str(demo_dir), "--user-id", "12", "--input-list", *items,
                 "--filter-expression", expr, "--filter-values", *values]) == 0
    out = json.loads(capsys.readouterr().out)
    campaign = Campaign(load_model(demo_dir), name="rankcore")
    want = campaign.rank("12", items, filter=compile_filter(expr), filter_values={"GENRE": '"Comedy","Drama"'})
    assert [e["itemId"] for e in out["personalizedRanking"]] == list(want.item_ids)
    assert 0 < len(want.item_ids) < len(items)


def test_info(demo_dir, capsys):
    assert main(["info", str(demo_dir)]) == 0
    text = capsys.readouterr().out
    assert "300" in text and "DEVICE" in text and "GENRE" in text and "float32" in text
    assert main(["info", "--json", str(demo_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_items"] == 300 and info["n_users"] == 50 and info["dim"] == 16
    assert info["dtype"] == "float32" and info["context_fields"] == {"DEVICE": 3}
    assert set(info["item_columns"]) == {"GENRE", "PRICE", "CREATION_TIMESTAMP"}


@pytest.mark.parametrize("command", [[], ["demo"], ["rank"], ["info"], ["serve"]])
def test_help(command, capsys):
    assert main([*command, "--help"]) == 0
    assert "usage: rankcore" in capsys.readouterr().out


@pytest.mark.parametrize("argv,code,needle", [
    (["frobnicate"], 2, "invalid choice"),
    (["rank", "--user-id", "1", "--input-list", "1"], 2, "--model"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--context", "DEVICE"], 2, "KEY=VALUE"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--filter-values", "{x"], 2, "JSON"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--filter-values", "G"], 2, "KEY=VALUE"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--context", '{"DEVICE": 1}'], 2, "string"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--context", '["DEVICE"]'], 2, "KEY=VALUE"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--metadata-columns", '{"ITEMS": "GENRE"}'], 2, "list"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--filter-values", "{}"], 1, "--filter-expression"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--context", "WEATHER=rain"], 1, "WEATHER"),
    (["rank", "--model", "{demo}", "--user-id", "1", "--input-list", "1", "--metadata-columns", "ITEMS=NOPE"], 1, "NOPE"),
    (["rank", "--model", "{missing}", "--user-id", "1", "--input-list", "1"], 1, "not a directory"),
    (["info", "{empty}"], 1, "manifest"),
    (["serve"], 1, "no campaign"),
    (["serve", "--campaign", "demo"], 1, "NAME=DIR"),
    (["serve", "--campaign", "demo={empty}"], 1, "manifest"),
    (["serve", "--campaign", "demo={demo}", "--port", "99999"], 2, "port"),
    (["serve", "--campaign", "demo={demo}", "--auth", "sigv4", "--no-reload"], 1, "--credentials"),
    (["serve", "--campaign", "demo={demo}", "--filter", "nofilter"], 1, "--filter"),
    (["serve", "--campaign", "demo={demo}", "--filter", "other:f=EXCLUDE ItemID WHERE Items.GENRE IN (\"x\")"],
     1, "unknown campaign"),
    (["serve", "--config", "{missing}"], 1, "No such file"),
])
def test_errors_are_one_line(demo_dir, tmp_path, capsys, argv, code, needle):
    empty = tmp_path / "empty"
    empty.mkdir()
    subs = {"{demo}": str(demo_dir), "{missing}": str(tmp_path / "missing"), "{empty}": str(empty)}
    for key, value in subs.items():
        argv = [a.replace(key, value) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    if code == 1:
        assert err.count("\n") == 1 and err.startswith("rankcore: error: ")


def test_no_arguments_prints_the_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: rankcore") and "demo" in out and "batch" in out


def _all_parsers():
    parser = build_parser()
    yield "rankcore", parser
    for action in parser._actions:  # the subcommands' parsers: only argparse's own list has them
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name == "batch":  # its arguments are added by rankcore.batch
                    batch = pytest.importorskip("rankcore.batch")
                    sub = batch.configure_parser(argparse.ArgumentParser(prog="rankcore batch"))
                yield name, sub


def test_every_argument_has_help():
    missing = [(name, a.dest) for name, parser in _all_parsers() for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert missing == []


def test_version_and_info_name_the_backend_and_kernel(demo_dir, capsys):
    build = rankcore.build_info()
    kernel = build["simd_kernel"] or "none"
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"rankcore {rankcore.__version__}")
    assert f"backend {build['default_backend']}" in r.stdout and f"SIMD kernel {kernel}" in r.stdout
    assert main(["info", str(demo_dir)]) == 0
    text = capsys.readouterr().out
    assert f"backend {build['default_backend']}" in text and f"SIMD kernel {kernel}" in text
    assert main(["info", "--json", str(demo_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == build["default_backend"] and info["simd_kernel"] == build["simd_kernel"]


def test_closed_pipe_is_quiet_subprocess(demo_dir):
    """``rankcore info DIR | head -1``: no "Broken pipe" message, the status of a SIGPIPE'd tool."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "rankcore", "info", str(demo_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert err == b""


def test_bad_model_subprocess_no_traceback(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    r = run("info", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith("rankcore: error: ") and r.stderr.count("\n") == 1, r.stderr


def test_batch_subcommand(capsys):
    code = main(["batch", "--help"])
    captured = capsys.readouterr()
    try:
        import rankcore.batch  # noqa: F401
    except ImportError:
        assert code == 2
        assert captured.err.count("\n") == 1 and "batch" in captured.err
    else:
        assert code == 0 and "usage: rankcore batch" in captured.out


def test_serve_settings_from_config(tmp_path, demo_dir):
    import argparse

    from rankcore.cli import configure_serve_parser
    from rankcore.serve import settings_from_args

    parser = argparse.ArgumentParser()
    configure_serve_parser(parser)
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"campaigns": {"a": str(demo_dir)}, "port": 9000, "region": "eu-west-1",
                                  "filters": {"f": 'EXCLUDE ItemID WHERE Items.GENRE IN ("x")'}}))
    s = settings_from_args(parser.parse_args(["--config", str(config), "--campaign", f"b={demo_dir}",
                                              "--port", "9001", "--filter", "b:g=INCLUDE ItemID WHERE Items.PRICE < 3"]))
    assert s["campaigns"] == {"a": str(demo_dir), "b": str(demo_dir)}
    assert s["port"] == 9001 and s["region"] == "eu-west-1" and s["host"] == "127.0.0.1"
    assert s["filters"] == [(None, "f", 'EXCLUDE ItemID WHERE Items.GENRE IN ("x")'),
                            ("b", "g", "INCLUDE ItemID WHERE Items.PRICE < 3")]
    assert s["max_input_items"] == 500 and s["reload_interval"] == 2.0 and s["auth"] == "none"
