"""Personalize semantics in-process: campaigns, the boto3-shaped client, request validation.

Layer 4, above ``model`` and ``filters``. ``campaign`` holds ``Campaign``, ``client`` the
``Client`` and its exception classes, ``data`` what filters see (``CampaignData``, the PutEvents
overlay), ``candidates`` de-duplication and filtering of a request's items, ``arguments`` the
parsing of ``rank_batch`` requests, ``results`` ``RankingResult``, ``response`` the response
entries, ``validate`` the service limits and ``ids`` ARNs and IDs. The contract it implements
is docs/personalize.md.
"""
from __future__ import annotations

from ..errors import InvalidInputException, PersonalizeError, ResourceNotFoundException
from .campaign import Campaign
from .client import Client
from .data import CampaignData
from .ids import DEFAULT_ACCOUNT, DEFAULT_REGION, new_recommendation_id, new_uuid
from .results import RankingResult
from .validate import validate_request

__all__ = ["Campaign", "CampaignData", "Client", "RankingResult", "PersonalizeError",
           "InvalidInputException", "ResourceNotFoundException", "DEFAULT_REGION", "DEFAULT_ACCOUNT",
           "new_uuid", "new_recommendation_id", "validate_request"]
