"""Datasets: the synthetic demo models (``synthetic``), kept at ``rankcore.datasets``."""
from __future__ import annotations

from .model.synthetic import DEVICES, EVENT_TYPES, GENRES, decimal_id_blob, synthetic

__all__ = ["synthetic", "decimal_id_blob", "GENRES", "DEVICES", "EVENT_TYPES"]
