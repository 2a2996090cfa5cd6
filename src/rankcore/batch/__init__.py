"""Batch inference over JSON Lines files, like a Personalize batch inference job.

Each input line ``{"userId", "itemList", "filterValues"?, "context"?}`` gets one output line
``{"input", "output": {"recommendedItems", "scores"}, "error"}``, in input order, with the
semantics of ``Campaign.rank``; a line that cannot be served gets ``"output": null`` and its
``"error"``, and the job goes on (format: see docs/personalize.md). :func:`rank_lines` is the
engine-free core (chunks.py); :func:`run` and the ``rankcore batch`` command (cli.py) split the
input into partitions (partitions.py) and rank them in this process (local.py) or on a Dask
cluster (dask.py), writing output that is never left half-written (output.py). With
``job="recommendations"`` lines ``{"userId"}`` or ``{"itemId"}`` get GetRecommendations' answer
in the same output format (recommendations.py, :func:`recommend_lines`).
"""
from __future__ import annotations

from ..errors import BatchError
from .chunks import DEFAULT_CHUNK_SIZE, _rank_chunk, _rank_chunk_careful, rank_lines
from .lines import SCORE_DECIMALS
from .cli import configure_parser, main
from .dask import local_cluster
from .job import run
from .local import _GC_THRESHOLD0, rank_partition
from .output import MANIFEST_NAME
from .partitions import DEFAULT_PARTITION_BYTES, Partition, _partition_lines, plan_partitions
from .progress import BatchSummary, _Progress
from .recommendations import recommend_lines

__all__ = ["rank_lines", "recommend_lines", "rank_partition", "run", "local_cluster", "BatchSummary", "Partition", "plan_partitions",
           "configure_parser", "main", "DEFAULT_CHUNK_SIZE", "DEFAULT_PARTITION_BYTES",
           "MANIFEST_NAME"]
