"""GetRecommendations request validation: the service's limits on a request body.

``validate_recommendations_request(body)`` checks a GetRecommendations body (wire names, as the
SDK sends it or as ``Client.get_recommendations`` takes keywords) the way ``validate`` checks a
ranking: a mapping with no unknown member, the required members, types, then every
length/pattern/range constraint collected into one ``InvalidInputException`` message. It reuses
``validate``'s checks of ARNs, string maps and metadata columns; the limits are listed in
docs/personalize.md.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from ..errors import InvalidInputException
from .validate import (_ARN_RE, _CONTEXT_KEY_RE, _FILTER_KEY_RE, ARN_PATTERN,
                       MAX_INPUT_ITEMS_WITH_METADATA, _metadata_errors, _string_map_errors,
                       _type_error, _violation)

__all__ = ["validate_recommendations_request", "RECOMMENDATIONS_MEMBERS", "MAX_NUM_RESULTS",
           "DEFAULT_NUM_RESULTS"]

RECOMMENDATIONS_MEMBERS = ("campaignArn", "recommenderArn", "userId", "itemId", "numResults",
                           "context", "filterArn", "filterValues", "promotions", "metadataColumns")
MAX_NUM_RESULTS = 500
DEFAULT_NUM_RESULTS = 25
_PROMOTION_MEMBERS = ("name", "percentPromotedItems", "filterArn", "filterValues")
_PROMOTION_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*")


def validate_recommendations_request(body: Mapping[str, Any]) -> None:
    """Raise ``InvalidInputException`` unless ``body`` is a valid GetRecommendations request.

    As ``validate_request``: a mapping without unknown members, then the required members
    (``campaignArn``; ``recommenderArn`` is refused: rankcore serves campaigns only; a
    ``userId`` or an ``itemId``), then types, then every constraint in one message.
    """
    if not isinstance(body, Mapping):
        raise InvalidInputException("Request body must be a JSON object")
    for key in body:
        if key not in RECOMMENDATIONS_MEMBERS:
            raise InvalidInputException(f"Unknown parameter in input: {key!r}, must be one of: "
                                        + ", ".join(RECOMMENDATIONS_MEMBERS))
    if body.get("recommenderArn") is not None:
        raise InvalidInputException("recommenderArn is not supported: rankcore serves campaigns "
                                    "(give campaignArn)")
    if body.get("campaignArn") is None:
        raise InvalidInputException("1 validation error detected: Value null at 'campaignArn' "
                                    "failed to satisfy constraint: Member must not be null")
    if body.get("userId") is None and body.get("itemId") is None:
        raise InvalidInputException("A userId (user recommendations) or an itemId (related items) "
                                    "is required")
    _check_recommendation_types(body)
    errors = _recommendation_errors(body)
    if errors:
        n = len(errors)
        raise InvalidInputException(f"{n} validation error{'s' if n > 1 else ''} detected: "
                                    + "; ".join(errors))


def _check_str_map(m, name: str) -> None:
    if m is None:
        return
    if not isinstance(m, Mapping):
        raise _type_error(name, m, "<class 'dict'>")
    for k, v in m.items():
        if not isinstance(k, str):
            raise _type_error(f"{name}.keys", k, "<class 'str'>")
        if not isinstance(v, str):
            raise _type_error(f"{name}.{k}", v, "<class 'str'>")


def _check_recommendation_types(body: Mapping[str, Any]) -> None:
    """Raise the first type error of a GetRecommendations ``body``."""
    for key in ("campaignArn", "userId", "itemId", "filterArn"):
        v = body.get(key)
        if v is not None and not isinstance(v, str):
            raise _type_error(key, v, "<class 'str'>")
    n = body.get("numResults")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise _type_error("numResults", n, "<class 'int'>")
    _check_str_map(body.get("context"), "context")
    _check_str_map(body.get("filterValues"), "filterValues")
    meta = body.get("metadataColumns")
    if meta is not None:
        if not isinstance(meta, Mapping):
            raise _type_error("metadataColumns", meta, "<class 'dict'>")
        for k, cols in meta.items():
            if not isinstance(k, str):
                raise _type_error("metadataColumns.keys", k, "<class 'str'>")
            if not isinstance(cols, (list, tuple)):
                raise _type_error(f"metadataColumns.{k}", cols, "<class 'list'>, <class 'tuple'>")
            for j, c in enumerate(cols):
                if not isinstance(c, str):
                    raise _type_error(f"metadataColumns.{k}[{j}]", c, "<class 'str'>")
    promos = body.get("promotions")
    if promos is None:
        return
    if not isinstance(promos, (list, tuple)):
        raise _type_error("promotions", promos, "<class 'list'>, <class 'tuple'>")
    for i, p in enumerate(promos):
        where = f"promotions[{i}]"
        if not isinstance(p, Mapping):
            raise _type_error(where, p, "<class 'dict'>")
        for key in p:
            if key not in _PROMOTION_MEMBERS:
                raise InvalidInputException(f"Unknown parameter in {where}: {key!r}, must be one "
                                            "of: " + ", ".join(_PROMOTION_MEMBERS))
        for key in ("name", "filterArn"):
            if p.get(key) is not None and not isinstance(p[key], str):
                raise _type_error(f"{where}.{key}", p[key], "<class 'str'>")
        pct = p.get("percentPromotedItems")
        if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int)):
            raise _type_error(f"{where}.percentPromotedItems", pct, "<class 'int'>")
        _check_str_map(p.get("filterValues"), f"{where}.filterValues")


def _arn_errors(v, where: str) -> list:
    errors = []
    if len(v) > 256:
        errors.append(_violation(v, where, "have length less than or equal to 256"))
    if not _ARN_RE.fullmatch(v):
        errors.append(_violation(v, where, f"satisfy regular expression pattern: {ARN_PATTERN}"))
    return errors


def _recommendation_errors(body: Mapping[str, Any]) -> list:
    """Every length/pattern/range violation of a well-typed GetRecommendations ``body``."""
    errors: list = []
    for key in ("campaignArn", "filterArn"):
        if body.get(key) is not None:
            errors += _arn_errors(body[key], key)
    for key in ("userId", "itemId"):
        v = body.get(key)
        if v is not None and len(v) > 256:
            errors.append(_violation(v, key, "have length less than or equal to 256"))
    meta = body.get("metadataColumns")
    n = body.get("numResults")
    if n is not None:
        limit = MAX_INPUT_ITEMS_WITH_METADATA if meta else MAX_NUM_RESULTS
        if n < 1:
            errors.append(_violation(n, "numResults", "have value greater than or equal to 1"))
        elif n > limit:
            errors.append(_violation(n, "numResults", f"have value less than or equal to {limit}"
                                     + (" when metadataColumns is set" if meta else "")))
    errors += _string_map_errors(body.get("context"), "context", 150, 150, _CONTEXT_KEY_RE)
    errors += _string_map_errors(body.get("filterValues"), "filterValues", 25, 50, _FILTER_KEY_RE)
    errors += _promotion_errors(body.get("promotions"))
    errors += _metadata_errors(meta)
    return errors


def _promotion_errors(promos) -> list:
    if promos is None:
        return []
    errors = []
    if len(promos) > 1:
        errors.append(_violation(len(promos), "promotions", "have length less than or equal to 1"))
    for i, p in enumerate(promos, 1):
        where = f"promotions.{i}.member"
        name = p.get("name")
        if name is None:
            errors.append(f"Value null at '{where}.name' failed to satisfy constraint: Member must "
                          "not be null")
        elif not 1 <= len(name) <= 63:
            errors.append(_violation(name, f"{where}.name", "have length between 1 and 63"))
        elif not _PROMOTION_NAME_RE.fullmatch(name):
            errors.append(_violation(name, f"{where}.name", "satisfy regular expression pattern: "
                                     + _PROMOTION_NAME_RE.pattern))
        pct = p.get("percentPromotedItems")
        if pct is None:
            errors.append(f"Value null at '{where}.percentPromotedItems' failed to satisfy "
                          "constraint: Member must not be null")
        elif not 1 <= pct <= 100:
            errors.append(_violation(pct, f"{where}.percentPromotedItems",
                                     "have value between 1 and 100"))
        if p.get("filterArn") is None:
            errors.append(f"Value null at '{where}.filterArn' failed to satisfy constraint: "
                          "Member must not be null")
        else:
            errors += _arn_errors(p["filterArn"], f"{where}.filterArn")
        errors += _string_map_errors(p.get("filterValues"), f"{where}.filterValues", 25, 50,
                                     _FILTER_KEY_RE)
    return errors
