"""Models from real data: Personalize datasets in, trained or imported models out.

Layer 5 (beside ``serve``, ``batch`` and ``evaluation``). ``readers`` reads Personalize's CSV or
Parquet datasets, ``synthetic`` writes one with planted structure, ``fit`` trains with implicit
(the optional extra ``rankcore[train]``), ``temperature`` fits and applies the logit scale,
``importers`` turns implicit, LightFM-style or stored embeddings into a Model. The ``rankcore train``
and ``rankcore eval`` commands are in ``rankcore.cli.training``. Fold-in lives in the model layer
(``Model.fold_in``).
"""
from __future__ import annotations

from .fit import train
from .importers import from_embeddings, from_implicit, from_lightfm, read_embeddings
from .readers import Dataset, load_schema, read_interactions, read_items, read_users
from .synthetic import synthetic_interactions
from .temperature import fit_logit_scale, with_logit_scale

__all__ = ["train", "from_implicit", "from_embeddings", "from_lightfm", "read_embeddings",
           "Dataset", "load_schema", "read_interactions", "read_items", "read_users",
           "synthetic_interactions", "fit_logit_scale", "with_logit_scale"]
