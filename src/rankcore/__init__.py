"""rankcore: fast local personalized ranking with Amazon Personalize semantics.

The hot path (gather candidate rows, dot-product logits, stable softmax, sort) runs in a C++
kernel (``rankcore._core``), with a numba fallback and a NumPy reference behind one API.
"""
from __future__ import annotations

import os
import platform

from . import _api, _backend
from ._api import (
    BatchRanking,
    BatchScores,
    ItemTable,
    Ranking,
    Scores,
    rank,
    rank_batch,
    score,
    score_batch,
)
from ._backend import HAS_CPP, HAS_NUMBA, available_backends

__version__ = "0.1.0"

__all__ = [
    "__version__",
    *_api.__all__,
    "available_backends",
    "build_info",
    "HAS_CPP",
    "HAS_NUMBA",
]


def build_info() -> dict:
    """Version, backends, the SIMD kernel in use, compiler and flags, threads."""
    info = {
        "version": __version__,
        "backends": available_backends(),
        "default_backend": _backend.resolve_name(None),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    if HAS_CPP:
        native = dict(_backend._core.build_info())
        info["simd_kernel"] = native.get("kernel", native.get("active_kernel"))
        info["native"] = native
    else:
        info["simd_kernel"] = None
        info["native_error"] = _backend.CORE_IMPORT_ERROR
    if HAS_NUMBA:
        import numba

        info["numba"] = numba.__version__
    return info

# model layer, Personalize semantics and filters
from . import datasets  # noqa: E402
from .campaign import (  # noqa: E402
    Campaign,
    Client,
    InvalidInputException,
    PersonalizeError,
    RankingResult,
    ResourceNotFoundException,
)
from .filters import FilterSyntaxError, compile_filter  # noqa: E402
from .model import Model, ModelFormatError, load_model  # noqa: E402

__all__ += [
    "Model", "ModelFormatError", "load_model", "Campaign", "Client", "RankingResult",
    "PersonalizeError", "InvalidInputException", "ResourceNotFoundException", "datasets",
    "FilterSyntaxError", "compile_filter",
]
