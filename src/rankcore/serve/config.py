"""Settings of ``rankcore serve``: command-line flags merged over a JSON ``--config`` file.

:func:`settings_from_args` gives one plain dict (JSON-serialisable, so ``--workers N`` hands it to
the worker processes through the environment); :func:`resolve_workers` turns the ``workers``
setting into a process count; :func:`console_enabled` says whether the test page is served.
"""
from __future__ import annotations

import json
import os

from ..personalize import DEFAULT_ACCOUNT, DEFAULT_REGION
from .app import DEFAULT_MAX_BODY_BYTES
from .events import parse_tracking_id
from .protocol import DEFAULT_LIMITS
from .registry import DEFAULT_RELOAD_INTERVAL, DEFAULT_RELOAD_TIMEOUT

__all__ = ["settings_from_args", "resolve_workers", "console_enabled", "parse_campaign", "parse_filter",
           "DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

_SETTINGS = {"host": DEFAULT_HOST, "port": DEFAULT_PORT, "workers": 1, "region": DEFAULT_REGION,
             "account": DEFAULT_ACCOUNT, "max_input_items": 500, "auth": "none", "credentials": None,
             "reload_interval": DEFAULT_RELOAD_INTERVAL, "no_reload": False, "backend": None,
             "log_level": "warning", "reload_timeout": DEFAULT_RELOAD_TIMEOUT,
             "max_body_bytes": DEFAULT_MAX_BODY_BYTES, "allow_unsigned_payload": False,
             "console": None,
             "event_store": None, "event_retention_days": None, "event_retention_rows": None,
             "event_compact_interval": 3600.0,
             **DEFAULT_LIMITS}


def parse_campaign(text: str) -> tuple:
    """``NAME=DIR`` -> ``(name, dir)``."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--campaign must look like NAME=DIR, got {text!r}")
    return name, path


def parse_filter(text: str) -> tuple:
    """``NAME=EXPR`` or ``CAMPAIGN:NAME=EXPR`` -> ``(campaign or None, name, expression)``."""
    head, sep, expr = text.partition("=")
    if not sep or not head or not expr.strip():
        raise ValueError(f"--filter must look like NAME=EXPRESSION or CAMPAIGN:NAME=EXPRESSION, got {text!r}")
    campaign, colon, name = head.rpartition(":")
    return (campaign if colon else None), name.strip(), expr.strip()


def _read_config(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            conf = json.load(f)
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    unknown = set(conf) - set(_SETTINGS) - {"campaigns", "filters", "tracking_ids"}
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
    return conf


def settings_from_args(args) -> dict:
    """Merge ``--config FILE`` with the command-line flags (flags win) into a plain dict."""
    conf = _read_config(args.config) if getattr(args, "config", None) else {}
    s = {k: conf.get(k, v) for k, v in _SETTINGS.items()}
    for k in _SETTINGS:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    campaigns = dict(conf.get("campaigns") or {})
    for text in getattr(args, "campaign", None) or []:
        name, path = parse_campaign(text)
        campaigns[name] = path
    conf_filters = conf.get("filters") or {}
    if isinstance(conf_filters, dict):
        conf_filters = [f"{k}={v}" for k, v in conf_filters.items()]
    filters = [parse_filter(text) for text in list(conf_filters) + list(getattr(args, "filter", None) or [])]
    for camp, _, _ in filters:
        if camp is not None and camp not in campaigns:
            raise ValueError(f"filter for unknown campaign {camp!r}")
    tracking_ids = dict(conf.get("tracking_ids") or {})
    for text in getattr(args, "tracking_id", None) or []:
        name, tid = parse_tracking_id(text)
        tracking_ids[name] = tid
    unknown = set(tracking_ids) - set(campaigns)
    if unknown:
        raise ValueError(f"tracking ID for unknown campaign(s) {sorted(unknown)}")
    s["campaigns"] = campaigns
    s["filters"] = filters
    s["tracking_ids"] = tracking_ids
    return s


def resolve_workers(value) -> int:
    """``workers`` setting -> process count: a positive int, or ``"auto"`` for one per CPU.

    The default stays 1: one process swaps models in place on SIGHUP (workers are restarted
    instead) and holds one copy of each model in memory. ``auto`` is for a multi-core machine where the server
    has the cores to itself; ranking is CPU-bound, so more workers than CPUs gains nothing.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # no sched_getaffinity outside Linux
            n = os.cpu_count() or 1
        return max(1, n)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', got {value!r}")
    return value


def console_enabled(s: dict) -> bool:
    """Whether ``GET /console`` is served: as set (``--console``/``--no-console``, or the config
    file's ``console``), else on unless ``auth`` is ``sigv4`` (the page cannot sign requests)."""
    value = s.get("console")
    if value is None:
        return s["auth"] != "sigv4"
    if not isinstance(value, bool):
        raise ValueError(f"console must be true or false, got {value!r}")
    return value
