"""The arguments of ``Campaign.rank``/``rank_batch`` in their Python form (not the wire form).

``parse_request`` turns one ``rank_batch`` request (tuple or dict, snake_case or the service's
camelCase names, see ``REQUEST_ALIASES``) into ``rank``'s arguments; ``metadata_spec`` resolves
``metadata_columns`` against the model's item columns; ``id_list`` refuses a bare string where a
list of IDs is expected. Wire-level limits are ``validate``'s.
"""
from __future__ import annotations

from typing import Mapping

from ..errors import InvalidInputException

__all__ = ["REQUEST_ALIASES", "parse_request", "metadata_spec", "id_list", "refuse_bare_string"]

#: Member names a ``rank_batch`` dict request may use -> ``rank``'s argument names.
REQUEST_ALIASES = {"user_id": "user_id", "userId": "user_id", "item_ids": "item_ids",
                   "inputList": "item_ids", "itemList": "item_ids", "context": "context",
                   "filter": "filter", "filterArn": "filter", "filter_values": "filter_values",
                   "filterValues": "filter_values", "metadata_columns": "metadata_columns",
                   "metadataColumns": "metadata_columns"}


def refuse_bare_string(value, name: str) -> None:
    """``TypeError`` naming ``name`` when ``value`` is a str or bytes where a sequence is expected
    (iterating it would yield its characters)."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a list, not {type(value).__name__}: its characters would "
                        f"be taken one by one (for one ID write [id])")


def id_list(ids, name: str = "item_ids"):
    """``ids`` as a list or tuple (any other iterable is listed); a bare str or bytes raises
    ``TypeError`` naming ``name``."""
    if isinstance(ids, (list, tuple)):
        return ids
    refuse_bare_string(ids, name)
    return list(ids)


def parse_request(req) -> dict:
    """``rank``'s arguments (``user_id``, ``item_ids`` as a list or tuple, optional others) of one
    ``(user_id, item_ids[, context])`` tuple or dict request."""
    if isinstance(req, Mapping):
        p = {}
        for k, v in req.items():
            name = REQUEST_ALIASES.get(k)
            if name is None:
                raise InvalidInputException(f"Unknown request member {k!r}")
            p[name] = v
    elif isinstance(req, (tuple, list)) and len(req) in (2, 3):
        p = {"user_id": req[0], "item_ids": req[1]}
        if len(req) == 3:
            p["context"] = req[2]
    else:
        raise TypeError("a request is a (user_id, item_ids[, context]) tuple or a dict")
    if "user_id" not in p or "item_ids" not in p:
        raise InvalidInputException("a request needs a user ID and a list of item IDs")
    p["item_ids"] = id_list(p["item_ids"], "item_ids")
    return p


def metadata_spec(item_columns: Mapping, metadata_columns) -> list:
    """``[(requested name, column), ...]`` for ``metadata_columns``: ``{"ITEMS": [names]}``, a list
    of names or one name; column names are case-insensitive. ``InvalidInputException`` lists
    the unknown ones."""
    if isinstance(metadata_columns, Mapping):
        names: list = []
        for key, cols in metadata_columns.items():
            if key != "ITEMS":
                raise InvalidInputException(
                    f"metadataColumns supports only the ITEMS dataset, got {key!r}")
            if isinstance(cols, str):
                raise InvalidInputException("metadataColumns.ITEMS must be a list of column names")
            names.extend(cols)
    elif isinstance(metadata_columns, str):
        names = [metadata_columns]
    else:
        names = list(metadata_columns)
    spec, missing = [], []
    for name in names:
        col = item_columns.get(name.upper()) if isinstance(name, str) else None
        if col is None:
            missing.append(name)
        else:
            spec.append((name, col))
    if missing:
        known = ", ".join(item_columns) or "none"
        raise InvalidInputException(f"Invalid metadata column(s) {missing} for dataset ITEMS "
                                    f"(the model's item columns: {known})")
    return spec
