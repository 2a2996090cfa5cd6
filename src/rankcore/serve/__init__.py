"""``rankcore serve``: the Personalize runtime wire protocol over HTTP (Starlette on uvicorn).

Needs the ``server`` extra. ``app`` holds the Starlette application and its routes, ``registry``
the served campaigns and their hot swap, ``sigv4`` the authentication, ``metrics`` the
``/metrics`` text, ``protocol`` the HTTP connection guards (timeouts, size limits, connection
cap), ``config`` the settings, ``main`` the command and the uvicorn start.
"""
from __future__ import annotations

from .app import create_app, error_response
from .config import DEFAULT_HOST, DEFAULT_PORT, resolve_workers, settings_from_args
from .main import app_from_environment, serve, serve_main
from .metrics import Metrics
from .registry import CampaignRegistry, CampaignSpec
from .sigv4 import SigV4Verifier, load_credentials

__all__ = ["CampaignSpec", "CampaignRegistry", "Metrics", "SigV4Verifier", "create_app",
           "error_response", "load_credentials", "resolve_workers", "settings_from_args",
           "app_from_environment", "serve", "serve_main", "DEFAULT_HOST", "DEFAULT_PORT"]
