"""The README's code runs as pasted.

Every ``python`` block runs, in order, in one namespace (later blocks use names of earlier ones),
inside a temporary directory; the ``rankcore`` commands of the quick start run as a subprocess.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

import rankcore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# where the imported rankcore comes from (src/ in development, site-packages when installed)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(rankcore.__file__)))


def _blocks(lang: str) -> list:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_the_two_commands_first():
    bash = _blocks("bash")
    assert "pip install" in bash[0] and "rankcore demo" in bash[0] and "rankcore rank" in bash[0]
    assert bash[1].strip().endswith("python -m pytest -q")


def test_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    blocks = _blocks("python")
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"README python block {i} failed: {exc!r}\n{block}") from exc


def test_quick_start_commands_run(tmp_path):
    first = _blocks("bash")[0]
    commands = [c.strip() for c in first.split("&&") if c.strip().startswith("rankcore ")]
    assert [c.split()[1] for c in commands] == ["demo", "rank"]
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for command in commands:
        argv = [sys.executable, "-m", "rankcore"] + shlex.split(command)[1:]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr)
    assert '"personalizedRanking"' in proc.stdout
