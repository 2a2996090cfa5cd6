"""Personalize semantics in-process: campaigns, the boto3-shaped client, request validation.

Layer 4, above ``model`` and ``filters``. The contract it implements is ``docs/personalize.md``.
"""
from __future__ import annotations

from ..errors import InvalidInputException, PersonalizeError, ResourceNotFoundException
from .campaign import DEFAULT_ACCOUNT, DEFAULT_REGION, Campaign, CampaignData, Client, RankingResult

__all__ = ["Campaign", "CampaignData", "Client", "RankingResult", "PersonalizeError",
           "InvalidInputException", "ResourceNotFoundException", "DEFAULT_REGION", "DEFAULT_ACCOUNT"]
