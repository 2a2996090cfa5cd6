"""The model layer: model artifacts on disk, string-ID indexes, metadata columns, synthetic data.

Layer 2, above ``core``. ``model`` holds the ``Model`` class and the directory format, ``ids``
the string-ID indexes, ``columns`` the metadata columns, ``synthetic`` the demo models.
"""
from __future__ import annotations

from ..errors import ModelFormatError
from .model import ContextTable, History, Model, load_model

__all__ = ["Model", "ModelFormatError", "load_model", "ContextTable", "History"]
