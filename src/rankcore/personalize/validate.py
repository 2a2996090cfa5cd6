"""GetPersonalizedRanking request validation: the service's limits on a request body.

``validate_request(body)`` checks a request body (the camelCase dict an SDK sends, or the keyword
arguments given to ``Client.get_personalized_ranking``) and raises ``InvalidInputException`` with
a message in the service's style (``1 validation error detected: Value '501' at 'inputList'
failed to satisfy constraint: ...``). It is shared by the in-process ``Client`` and the HTTP
server. Checks, in order: a mapping with no unknown member; the required members; types
(botocore-style "Invalid type for parameter ..."); then every length/pattern/count constraint,
collected into one message. The limits are listed in docs/personalize.md.
"""
from __future__ import annotations

import re
import reprlib
from typing import Any, Mapping

from ..core import native
from ..errors import InvalidInputException

__all__ = ["validate_request", "MAX_INPUT_ITEMS", "MAX_INPUT_ITEMS_WITH_METADATA",
           "REQUEST_MEMBERS", "first_bad_id_py"]


def first_bad_id_py(ids, max_len: int) -> int:
    """Python twin of ``_core.first_bad_id``."""
    if set(map(type, ids)) <= {str} and (not ids or max(map(len, ids)) <= max_len):
        return -1
    for i, v in enumerate(ids):
        if not isinstance(v, str) or len(v) > max_len:
            return i
    return -1  # str subclasses only


_first_bad = native.function("first_bad_id", first_bad_id_py)

MAX_INPUT_ITEMS = 500
MAX_INPUT_ITEMS_WITH_METADATA = 50
REQUEST_MEMBERS = ("campaignArn", "userId", "inputList", "context", "filterArn", "filterValues",
                   "metadataColumns")
_REQUIRED = ("campaignArn", "userId", "inputList")
ARN_PATTERN = r"arn:([a-z\d-]+):personalize:.*:.*:.+"
_ARN_RE = re.compile(ARN_PATTERN, re.DOTALL)
_CONTEXT_KEY_RE = re.compile(r"[A-Za-z\d_]+")
_FILTER_KEY_RE = re.compile(r"[A-Za-z0-9_]+")


def _type_error(name: str, value: Any, valid: str) -> InvalidInputException:
    return InvalidInputException(f"Invalid type for parameter {name}, value: {_short_repr(value)}, "
                                 f"type: {type(value)}, valid types: {valid}")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 2


def _short_repr(value: Any) -> str:
    """``repr(value)`` cut to a short prefix without building the whole text of a huge value."""
    return _REPR.repr(value)


def _short(value: Any) -> str:
    s = value[:61] if isinstance(value, str) else _short_repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


def validate_request(body: Mapping[str, Any], *, max_input_items: int | None = MAX_INPUT_ITEMS) -> None:
    """Raise ``InvalidInputException`` unless ``body`` is a valid GetPersonalizedRanking request.

    Parameters
    ----------
    body : mapping
        Request members by their wire names (``campaignArn``, ``userId``, ``inputList``, ...).
    max_input_items : int or None
        Item limit without metadata columns (the service's 500); ``None`` lifts it. With
        ``metadataColumns`` the limit is ``min(max_input_items, 50)``.
    """
    if not isinstance(body, Mapping):
        raise InvalidInputException("Request body must be a JSON object")
    for key in body:
        if key not in REQUEST_MEMBERS:
            raise InvalidInputException(f"Unknown parameter in input: {key!r}, must be one of: "
                                        + ", ".join(REQUEST_MEMBERS))
    for key in _REQUIRED:
        if body.get(key) is None:
            raise InvalidInputException(f"1 validation error detected: Value null at '{key}' "
                                        "failed to satisfy constraint: Member must not be null")
    long_ids = _check_types(body)
    errors = _constraint_errors(body, max_input_items, long_ids)
    if errors:
        n = len(errors)
        raise InvalidInputException(f"{n} validation error{'s' if n > 1 else ''} detected: "
                                    + "; ".join(errors))


def _check_types(body: Mapping[str, Any]) -> bool:
    """Raise the first type error of ``body``; return whether an input ID is over 256 characters."""
    for key in ("campaignArn", "userId", "filterArn"):
        v = body.get(key)
        if v is not None and not isinstance(v, str):
            raise _type_error(key, v, "<class 'str'>")
    items = body["inputList"]
    if not isinstance(items, (list, tuple)):
        raise _type_error("inputList", items, "<class 'list'>, <class 'tuple'>")
    # one pass over the ids (native when built): a non-str, or an id over 256 characters
    long_ids = False
    if items and _first_bad(items, 256) >= 0:
        for i, v in enumerate(items):
            if not isinstance(v, str):
                raise _type_error(f"inputList[{i}]", v, "<class 'str'>")
        long_ids = True
    for key in ("context", "filterValues", "metadataColumns"):
        m = body.get(key)
        if m is None:
            continue
        if not isinstance(m, Mapping):
            raise _type_error(key, m, "<class 'dict'>")
        for k, v in m.items():
            if not isinstance(k, str):
                raise _type_error(f"{key}.keys", k, "<class 'str'>")
            if key == "metadataColumns":
                if not isinstance(v, (list, tuple)):
                    raise _type_error(f"{key}.{k}", v, "<class 'list'>, <class 'tuple'>")
                for j, c in enumerate(v):
                    if not isinstance(c, str):
                        raise _type_error(f"{key}.{k}[{j}]", c, "<class 'str'>")
            elif not isinstance(v, str):
                raise _type_error(f"{key}.{k}", v, "<class 'str'>")
    return long_ids


def _violation(value: Any, where: str, constraint: str) -> str:
    return (f"Value '{_short(value)}' at '{where}' failed to satisfy constraint: "
            f"Member must {constraint}")


def _constraint_errors(body: Mapping[str, Any], max_input_items: int | None, long_ids: bool) -> list:
    """Every length/pattern/count violation of a well-typed ``body``, in the service's order."""
    errors: list = []
    for key in ("campaignArn", "filterArn"):
        v = body.get(key)
        if v is None:
            continue
        if len(v) > 256:
            errors.append(_violation(v, key, "have length less than or equal to 256"))
        if not _ARN_RE.fullmatch(v):
            errors.append(_violation(v, key, f"satisfy regular expression pattern: {ARN_PATTERN}"))
    if len(body["userId"]) > 256:
        errors.append(_violation(body["userId"], "userId", "have length less than or equal to 256"))
    items = body["inputList"]
    meta = body.get("metadataColumns")
    limit = max_input_items
    if meta:
        limit = MAX_INPUT_ITEMS_WITH_METADATA if limit is None else min(limit, MAX_INPUT_ITEMS_WITH_METADATA)
    if limit is not None and len(items) > limit:
        errors.append(_violation(len(items), "inputList", f"have length less than or equal to {limit}"
                                 + (" when metadataColumns is set" if meta else "")))
    if long_ids:
        for i, v in enumerate(items):
            if len(v) > 256:
                errors.append(_violation(v, f"inputList.{i + 1}.member",
                                         "have length less than or equal to 256"))
    errors += _string_map_errors(body.get("context"), "context", 150, 150, _CONTEXT_KEY_RE)
    errors += _string_map_errors(body.get("filterValues"), "filterValues", 25, 50, _FILTER_KEY_RE)
    errors += _metadata_errors(meta)
    return errors


def _metadata_errors(meta) -> list:
    """The limits of ``metadataColumns`` (one key, ITEMS, at most 10 names of 150 characters)."""
    if meta is None:
        return []
    errors = []
    if len(meta) > 1:
        errors.append(_violation(len(meta), "metadataColumns", "have length less than or equal to 1"))
    for k, cols in meta.items():
        if k != "ITEMS":
            errors.append(_violation(k, "metadataColumns.key",
                                     "be ITEMS (the only dataset with returnable columns)"))
        if len(cols) > 10:
            errors.append(_violation(len(cols), f"metadataColumns.{k}",
                                     "have length less than or equal to 10"))
        for c in cols:
            if len(c) > 150:
                errors.append(_violation(c, f"metadataColumns.{k}.member",
                                         "have length less than or equal to 150"))
    return errors


def _string_map_errors(m, field: str, max_entries: int, max_key: int, key_re) -> list:
    """The limits of a str -> str map (context, filterValues); values are masked as '***'."""
    if m is None:
        return []
    errors = []
    if len(m) > max_entries:
        errors.append(_violation(len(m), field, f"have length less than or equal to {max_entries}"))
    for k, v in m.items():
        if len(k) > max_key:
            errors.append(_violation(k, f"{field}.key", f"have length less than or equal to {max_key}"))
        if not key_re.fullmatch(k):
            errors.append(_violation(k, f"{field}.key",
                                     f"satisfy regular expression pattern: {key_re.pattern}"))
        if len(v) > 1000:
            errors.append(_violation("***", f"{field}.{k}.value", "have length less than or equal to 1000"))
    return errors

