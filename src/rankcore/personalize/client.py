"""``Client``: an in-process stand-in for ``boto3.client("personalize-runtime")``.

``get_personalized_ranking`` takes boto3's keyword arguments, checks them with
``validate.validate_request`` (the service limits), ranks with the named ``Campaign`` and returns
boto3's response dict. Its errors are ``client.exceptions.InvalidInputException`` and
``client.exceptions.ResourceNotFoundException``: subclasses of ``rankcore.errors``' classes that
also derive from ``botocore.exceptions.ClientError`` when botocore is installed, so code that
catches either kind runs unchanged. See docs/personalize.md for the contract.
"""
from __future__ import annotations

from typing import Mapping

from ..errors import DEFAULT_OPERATION as _OPERATION
from ..errors import InvalidInputException, PersonalizeError, ResourceNotFoundException
from .campaign import Campaign
from .ids import new_uuid
from .recommend import RecommendationResult
from .results import RankingResult
from .validate import MAX_INPUT_ITEMS, validate_request
from .validate_recommend import DEFAULT_NUM_RESULTS, validate_recommendations_request

__all__ = ["Client", "ClientExceptions"]

_RECOMMEND = "GetRecommendations"  # operation name in the errors of get_recommendations


def _with_client_error(base: type, client_error: type) -> type:
    """``base`` (a ``PersonalizeError`` subclass) that is also a botocore ``ClientError``."""

    def __init__(self, message="", operation_name=_OPERATION):
        client_error.__init__(self, {"Error": {"Code": base.code, "Message": message},
                                     "ResponseMetadata": {"HTTPStatusCode": base.http_status}},
                              operation_name)
        self.message = message

    def __reduce__(self):
        return type(self), (self.message, self.operation_name)

    return type(base.__name__, (base, client_error),
                {"__init__": __init__, "__str__": Exception.__str__, "__reduce__": __reduce__,
                 "__module__": __name__, "__qualname__": f"ClientExceptions.{base.__name__}"})


def _client_exception_classes() -> type:
    """``client.exceptions``: our errors, also ``botocore.exceptions.ClientError`` when available."""
    try:  # botocore is optional: without it the classes are rankcore.errors' own
        from botocore.exceptions import ClientError
    except ImportError:  # pragma: no cover - depends on the environment
        return type("ClientExceptions", (), {
            "PersonalizeError": PersonalizeError, "ClientError": PersonalizeError,
            "InvalidInputException": InvalidInputException,
            "ResourceNotFoundException": ResourceNotFoundException})
    return type("ClientExceptions", (), {
        "PersonalizeError": PersonalizeError, "ClientError": ClientError,
        "InvalidInputException": _with_client_error(InvalidInputException, ClientError),
        "ResourceNotFoundException": _with_client_error(ResourceNotFoundException, ClientError)})


#: The class of ``Client.exceptions`` (module-level so that its exceptions pickle).
ClientExceptions = _client_exception_classes()


class Client:
    """In-process stand-in for ``boto3.client("personalize-runtime")`` (GetPersonalizedRanking and
    GetRecommendations).

    Parameters
    ----------
    campaigns : list of Campaign, or mapping of campaign ARN -> Campaign
    max_input_items : int or None
        The ``inputList`` limit (the service's 500 by default; ``None`` lifts it).

    ``get_personalized_ranking`` takes boto3's keyword arguments and returns the dict boto3 returns
    (including ``ResponseMetadata``); errors are ``client.exceptions.InvalidInputException`` and
    ``client.exceptions.ResourceNotFoundException``.
    """

    def __init__(self, campaigns, *, max_input_items: int | None = MAX_INPUT_ITEMS):
        if isinstance(campaigns, Campaign):
            campaigns = [campaigns]
        if isinstance(campaigns, Mapping):
            self._campaigns = dict(campaigns)
        else:
            self._campaigns = {c.arn: c for c in campaigns}
        self.max_input_items = max_input_items
        self.exceptions = ClientExceptions

    @property
    def campaigns(self) -> dict:
        return dict(self._campaigns)

    def _rank_request(self, params: Mapping) -> RankingResult:
        """Validate a request body, find its campaign and rank; client-flavoured exceptions."""
        exc = self.exceptions
        try:
            validate_request(params, max_input_items=self.max_input_items)
            arn = params["campaignArn"]
            campaign = self._campaigns.get(arn)
            if campaign is None:
                raise ResourceNotFoundException(f"Resource {arn} does not exist.")
            get = params.get
            return campaign.rank(params["userId"], params["inputList"],
                                 context=get("context"), filter=get("filterArn"),
                                 filter_values=get("filterValues"),
                                 metadata_columns=get("metadataColumns"))
        except InvalidInputException as e:
            raise exc.InvalidInputException(e.message) from None
        except ResourceNotFoundException as e:
            raise exc.ResourceNotFoundException(e.message) from None

    def get_personalized_ranking(self, **params) -> dict:
        """GetPersonalizedRanking with boto3's keyword arguments; returns boto3's response dict."""
        response = self._rank_request(params).to_response()
        return _with_metadata(response)

    def get_personalized_ranking_json(self, params: Mapping) -> tuple:
        """GetPersonalizedRanking straight to the wire: ``(body, request_id)``.

        ``params`` is the request body as a mapping (wire names, as ``get_personalized_ranking``
        takes them as keywords); ``body`` is the JSON response body as ``bytes`` (no
        ``ResponseMetadata``) and ``request_id`` a new UUID. Validation, ranking and errors are
        those of ``get_personalized_ranking``; only the boto3-style response dict is skipped,
        for servers that send the body as it is. Needs orjson (the ``server`` extra).
        """
        from orjson import dumps  # optional dependency (the server extra)

        return dumps(self._rank_request(params).to_response()), new_uuid()

    def _recommend_request(self, params: Mapping) -> RecommendationResult:
        """Validate a GetRecommendations body, find its campaign and recommend (as ``_rank_request``)."""
        exc = self.exceptions
        try:
            validate_recommendations_request(params)
            arn = params["campaignArn"]
            campaign = self._campaigns.get(arn)
            if campaign is None:
                raise ResourceNotFoundException(f"Resource {arn} does not exist.")
            get = params.get
            n = get("numResults")
            return campaign.recommend(get("userId"), get("itemId"),
                                      DEFAULT_NUM_RESULTS if n is None else n,
                                      context=get("context"), filter=get("filterArn"),
                                      filter_values=get("filterValues"),
                                      promotions=get("promotions"),
                                      metadata_columns=get("metadataColumns"))
        except InvalidInputException as e:
            raise exc.InvalidInputException(e.message, _RECOMMEND) from None
        except ResourceNotFoundException as e:
            raise exc.ResourceNotFoundException(e.message, _RECOMMEND) from None

    def get_recommendations(self, **params) -> dict:
        """GetRecommendations with boto3's keyword arguments; returns boto3's response dict.

        ``campaignArn`` and ``userId`` (user recommendations) or ``itemId`` (related items; with
        it ``userId`` is optional and seen by filters only); ``numResults`` (default 25, 1-500,
        at most 50 with ``metadataColumns``), ``context``, ``filterArn``/``filterValues``,
        ``promotions`` (at most 1) and ``metadataColumns``. ``recommenderArn`` is refused.
        """
        response = self._recommend_request(params).to_response()
        return _with_metadata(response)

    def get_recommendations_json(self, params: Mapping) -> tuple:
        """GetRecommendations straight to the wire: ``(body bytes, request ID)``, as
        ``get_personalized_ranking_json``. Needs orjson (the ``server`` extra)."""
        from orjson import dumps  # optional dependency (the server extra)

        return dumps(self._recommend_request(params).to_response()), new_uuid()

    def can_paginate(self, operation_name: str) -> bool:
        return False


def _with_metadata(response: dict) -> dict:
    """``response`` with boto3's ``ResponseMetadata`` (a new request ID)."""
    request_id = new_uuid()
    response["ResponseMetadata"] = {
        "RequestId": request_id, "HTTPStatusCode": 200,
        "HTTPHeaders": {"content-type": "application/json", "x-amzn-requestid": request_id},
        "RetryAttempts": 0}
    return response
