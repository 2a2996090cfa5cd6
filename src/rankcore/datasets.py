"""Datasets: the synthetic demo models (``synthetic``) and Personalize datasets (``train``).

``synthetic`` builds a model directly; ``synthetic_interactions`` writes a Personalize-schema
dataset and ``read_interactions``/``read_items``/``read_users`` read one (these need the
optional extra ``rankcore[train]`` when called, not when imported).
"""
from __future__ import annotations

from .model.synthetic import DEVICES, EVENT_TYPES, GENRES, decimal_id_blob, synthetic
from .train.readers import Dataset, load_schema, read_interactions, read_items, read_users
from .train.synthetic import synthetic_interactions

__all__ = ["synthetic", "decimal_id_blob", "GENRES", "DEVICES", "EVENT_TYPES",
           "synthetic_interactions", "read_interactions", "read_items", "read_users",
           "load_schema", "Dataset"]
