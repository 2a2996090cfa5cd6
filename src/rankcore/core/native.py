"""The one place that imports the compiled extension ``rankcore._core``.

Every layer asks this module (``native.core``, ``native.HAS_NATIVE``) instead of importing the
extension itself. The extension is optional (``pip install`` succeeds without a compiler); each
native function has a pure-Python twin named ``<name>_py`` beside the code that uses it, chosen
once at import by ``native.function(name, fallback)``.
"""
from __future__ import annotations

import importlib

__all__ = ["core", "HAS_NATIVE", "IMPORT_ERROR", "function"]

try:
    core = importlib.import_module("rankcore._core")
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the build
    core = None
    IMPORT_ERROR = str(exc)

#: True when the extension imported.
HAS_NATIVE = core is not None


def function(name: str, fallback=None):
    """The native function ``name``, or ``fallback`` when the extension is not built."""
    return getattr(core, name) if HAS_NATIVE else fallback
