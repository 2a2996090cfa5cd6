"""Packaging promises: the numba fallback is installed with the package (issue 11, item 21).

A plain ``pip install .`` without a compiler used to succeed and run on the slow NumPy reference,
because numba was only an extra; it is now a dependency, so the fallback the design promises is
what such an install gets.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_numba_is_a_dependency():
    deps = [d.split(">")[0].split("=")[0].strip().lower() for d in _project()["dependencies"]]
    assert "numba" in deps and "numpy" in deps


def test_every_extra_is_in_the_test_extra():
    extras = _project()["optional-dependencies"]
    test = {d.split(">")[0].split("[")[0].strip().lower() for d in extras["test"]}
    for name, deps in extras.items():
        for d in deps:
            assert d.split(">")[0].split("[")[0].strip().lower() in test, (name, d)
