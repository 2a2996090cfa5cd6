"""Build script for the optional C++ extension ``rankcore._core``.

Project metadata lives in pyproject.toml; this file only describes the extension.

Environment variables:

- ``RANKCORE_MARCH_NATIVE=1``: add ``-march=native`` (off by default: a wheel built with it
  may crash with SIGILL on an older CPU; run-time dispatch already picks AVX2 when present).
- ``RANKCORE_SANITIZE=1``: build with AddressSanitizer and UndefinedBehaviorSanitizer
  (``-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g``), for ``.ci/sanitize.sh``.

If the extension cannot be compiled, installation still succeeds with a warning and
rankcore falls back to its numba backend.
"""

import os
import sys
from glob import glob

from pybind11.setup_helpers import Pybind11Extension
from pybind11.setup_helpers import build_ext as _pybind11_build_ext
from setuptools import find_packages, setup

_WARNING = "rankcore: C++ extension could not be built ({}); falling back to numba"


def _flags():
    """Compile and link flags for the extension (no -march=native, no -ffast-math by default)."""
    if sys.platform == "win32":
        return ["/O2"], []
    compile_args = ["-O3", "-Wall", "-Wextra"]
    link_args = []
    if os.environ.get("RANKCORE_MARCH_NATIVE") == "1":
        compile_args.append("-march=native")
    if os.environ.get("RANKCORE_SANITIZE") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
        compile_args = [f for f in compile_args if f != "-O3"] + sanitize
        link_args += sanitize
    return compile_args, link_args


class OptionalBuildExt(_pybind11_build_ext):
    """pybind11's build_ext, but a failed build only warns instead of failing the install."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        message = _WARNING.format(f"{type(exc).__name__}: {exc}")
        print("*" * 75, file=sys.stderr)
        print(message, file=sys.stderr)
        print("*" * 75, file=sys.stderr)


_compile_args, _link_args = _flags()
_macros = []
if sys.platform != "win32":
    _macros.append(("RANKCORE_COMPILE_FLAGS", '"{}"'.format(" ".join(["-std=c++17"] + _compile_args))))

ext_modules = [
    Pybind11Extension(
        "rankcore._core",
        sorted(glob("cpp/src/*.cpp")),
        include_dirs=["cpp/include"],
        cxx_std=17,
        extra_compile_args=_compile_args,
        extra_link_args=_link_args,
        define_macros=_macros,
    )
]

setup(
    package_dir={"": "src"},
    packages=find_packages(where="src"),
    ext_modules=ext_modules,
    cmdclass={"build_ext": OptionalBuildExt},
)
