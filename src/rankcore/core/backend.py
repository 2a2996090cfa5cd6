"""Backend selection: ``backend=`` argument, else ``RANKCORE_BACKEND``, else the best available.

Backends, best first: ``"cpp"`` (``rankcore._core`` through ``core.native``), ``"numba"``
(``core.numba_backend``, imported lazily on first use), ``"numpy"`` (``core.reference``).
Each exposes ``score(...)`` and ``rank(...)`` with the same arguments (see ``core.reference``).
Availability is probed once at import (``HAS_CPP``, ``HAS_NUMBA``); the choice is made per call, so
tests and users can switch backends inside one process. Asking for a backend that is not available
raises ``ImportError``; an unknown name raises ``ValueError``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

from . import native

__all__ = ["BACKENDS", "HAS_CPP", "HAS_NUMBA", "available_backends", "get_backend", "resolve_name"]

BACKENDS = ("cpp", "numba", "numpy")

HAS_CPP = native.HAS_NATIVE
CORE_IMPORT_ERROR = native.IMPORT_ERROR

HAS_NUMBA = importlib.util.find_spec("numba") is not None

_loaded: dict = {}


def available_backends() -> list:
    """Names of the backends usable in this process, best first."""
    out = []
    if HAS_CPP:
        out.append("cpp")
    if HAS_NUMBA:
        out.append("numba")
    out.append("numpy")
    return out


# ``os.environ.get`` encodes the key on every call; the hot path reads the bytes
# mapping behind ``os.environ`` instead, which ``os.environ[...] = ...`` keeps up to date.
_ENV_DATA = getattr(os.environ, "_data", None)
try:
    _ENV_KEY = os.environ.encodekey("RANKCORE_BACKEND")  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - not CPython's os._Environ
    _ENV_DATA = _ENV_KEY = None


def _env_backend():
    if _ENV_DATA is not None:
        raw = _ENV_DATA.get(_ENV_KEY)
        return None if raw is None else os.environ.decodevalue(raw)  # type: ignore[attr-defined]
    return os.environ.get("RANKCORE_BACKEND")


def resolve_name(backend: str | None = None) -> str:
    """The backend a call with ``backend=`` would use."""
    name = backend if backend is not None else _env_backend() or None
    if name is None:
        return "cpp" if HAS_CPP else ("numba" if HAS_NUMBA else "numpy")
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "cpp" and not HAS_CPP:
        raise ImportError(f"backend 'cpp' is not available: the C++ extension is not built ({CORE_IMPORT_ERROR})")
    if name == "numba" and not HAS_NUMBA:
        raise ImportError("backend 'numba' is not available: numba is not installed")
    return name


def get_backend(backend: str | None = None):
    """The module implementing ``score``/``rank`` for the resolved backend."""
    name = resolve_name(backend)
    mod = _loaded.get(name)
    if mod is None:
        if name == "cpp":
            mod = native.core
        elif name == "numba":  # imported on first use: compiling it costs seconds
            mod = importlib.import_module("rankcore.core.numba_backend")
        else:  # imported on first use too: the reference is a fallback
            mod = importlib.import_module("rankcore.core.reference")
        _loaded[name] = mod
    return mod
