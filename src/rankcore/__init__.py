"""rankcore: fast local personalized ranking with Amazon Personalize semantics.

The hot path (gather candidate rows, dot-product logits, stable softmax, sort) runs in a C++
kernel (``rankcore._core``), with a numba fallback and a NumPy reference behind one API. The
package is layered (``ARCHITECTURE.md``): ``core`` < ``model`` < ``filters`` < ``personalize`` <
``serve``/``batch`` < ``cli``; this module only re-exports the public names.
"""
from __future__ import annotations

import os
import platform

from . import core, datasets
from .core import (
    HAS_CPP,
    HAS_NUMBA,
    BatchRanking,
    BatchScores,
    ItemTable,
    Ranking,
    Scores,
    available_backends,
    rank,
    rank_batch,
    score,
    score_batch,
    topk,
    topk_batch,
)
from .core import native as _native
from .errors import (
    FilterSyntaxError,
    InvalidInputException,
    ModelFormatError,
    PersonalizeError,
    ResourceNotFoundException,
)
from .filters import compile_filter
from .model import Model, load_model
from .personalize import Campaign, Client, RankingResult

__version__ = "0.1.0"

__all__ = [
    "__version__", "ItemTable", "Ranking", "BatchRanking", "Scores", "BatchScores", "rank",
    "rank_batch", "score", "score_batch", "available_backends", "build_info", "HAS_CPP",
    "HAS_NUMBA", "Model", "ModelFormatError", "load_model", "Campaign", "Client", "RankingResult",
    "PersonalizeError", "InvalidInputException", "ResourceNotFoundException", "datasets",
    "FilterSyntaxError", "compile_filter", "topk", "topk_batch",
]


def build_info() -> dict:
    """Version, backends, the SIMD kernel in use, compiler and flags, threads."""
    info = {
        "version": __version__,
        "backends": available_backends(),
        "default_backend": core.resolve_name(None),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    if _native.HAS_NATIVE:
        native = dict(_native.core.build_info())
        info["simd_kernel"] = native.get("kernel", native.get("active_kernel"))
        info["native"] = native
    else:
        info["simd_kernel"] = None
        info["native_error"] = _native.IMPORT_ERROR
    if HAS_NUMBA:
        import numba  # only to report its version; numba itself is imported lazily elsewhere

        info["numba"] = numba.__version__
    return info
