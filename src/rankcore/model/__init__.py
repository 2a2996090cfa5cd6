"""The model layer: model artifacts on disk, string-ID indexes, metadata columns, synthetic data.

Layer 2, above ``core``. ``model`` holds the ``Model`` class and ``load_model``, ``parts`` its
context tables and histories, ``storage`` the directory format, ``ids`` the string-ID indexes,
``columns`` the metadata columns, ``synthetic`` the demo models.
"""
from __future__ import annotations

from ..errors import ModelFormatError
from .model import RECENT_INTERACTIONS_PER_TYPE, Model, load_model
from .parts import ContextTable, History
from .storage import FORMAT_NAME, FORMAT_VERSION

__all__ = ["Model", "ModelFormatError", "load_model", "ContextTable", "History",
           "RECENT_INTERACTIONS_PER_TYPE", "FORMAT_NAME", "FORMAT_VERSION"]
