"""``rankcore serve``: build the campaigns and the app from the settings, run uvicorn.

One process by default. Ranking is CPU-bound Python around native kernels, so one process serves
at most one core; ``--workers N`` (or ``auto``) starts N uvicorn workers, each of which builds its
own registry through the factory :func:`app_from_environment` (settings passed as JSON in
``RANKCORE_SERVE_SETTINGS``). With workers, ``/metrics`` counts per worker and SIGHUP restarts
the workers (uvicorn's supervisor) instead of swapping models in place. Without authentication
the server warns unless it binds a loopback address.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import sys

import uvicorn
from starlette.applications import Starlette

from .app import create_app
from .config import resolve_workers, settings_from_args
from .registry import CampaignRegistry, CampaignSpec
from .sigv4 import SigV4Verifier, load_credentials

__all__ = ["serve", "serve_main", "app_from_environment", "app_from_settings", "registry_from_settings"]

log = logging.getLogger(__name__)

#: The uvicorn factory of the worker processes (an import string: each worker imports it).
WORKER_FACTORY = "rankcore.serve.main:app_from_environment"
_SETTINGS_ENV = "RANKCORE_SERVE_SETTINGS"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def registry_from_settings(s: dict) -> CampaignRegistry:
    specs = []
    for name, path in s["campaigns"].items():
        fl = [(n, e) for c, n, e in s["filters"] if c is None or c == name]
        specs.append(CampaignSpec(name, os.fspath(path), fl))
    return CampaignRegistry(specs, region=s["region"], account=s["account"],
                            max_input_items=s["max_input_items"], backend=s["backend"])


def app_from_settings(s: dict) -> Starlette:
    """The app of one process; starts the model watcher (``_sighup``: also for SIGHUP alone)."""
    registry = registry_from_settings(s)
    verifier = SigV4Verifier(load_credentials(s["credentials"])) if s["auth"] == "sigv4" else None
    if not s["no_reload"] or s.get("_sighup"):
        registry.start_watcher(None if s["no_reload"] else s["reload_interval"])
    app = create_app(registry, verifier=verifier)
    gc.collect()
    gc.freeze()  # start-up objects never need scanning again: cheaper collections per request
    return app


def app_from_environment() -> Starlette:
    """uvicorn factory for ``--workers N``: settings come in ``RANKCORE_SERVE_SETTINGS`` (JSON)."""
    s = json.loads(os.environ[_SETTINGS_ENV])
    s["filters"] = [tuple(f) for f in s["filters"]]
    _configure_logging(s["log_level"])
    return app_from_settings(s)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("rankcore.serve").setLevel(level.upper())


def serve(s: dict) -> int:
    """Run the server until SIGINT/SIGTERM. ``s`` comes from ``settings_from_args``."""
    _configure_logging(s["log_level"])
    s = dict(s, workers=resolve_workers(s["workers"]))
    if s["auth"] == "sigv4" and not s["credentials"]:
        raise ValueError("--auth sigv4 needs --credentials FILE")
    if s["auth"] == "none" and s["host"] not in _LOOPBACK:
        print(f"warning: serving on {s['host']} without authentication: anyone who can reach this "
              "address can query the models (use --auth sigv4 --credentials FILE)", file=sys.stderr)
    common = dict(host=s["host"], port=s["port"], loop="uvloop", http="httptools", access_log=False,
                  log_level=s["log_level"], lifespan="off", server_header=False,
                  proxy_headers=False)  # nothing reads the client address or scheme
    if s["workers"] > 1:
        # each worker builds its own registry (and watcher) from the settings
        registry = registry_from_settings(s)  # fail fast, and print the ARNs, in the parent
        _print_startup(s, registry)
        del registry
        os.environ[_SETTINGS_ENV] = json.dumps(s)
        uvicorn.run(WORKER_FACTORY, factory=True, workers=s["workers"], **common)
        return 0
    app = app_from_settings(dict(s, _sighup=True))
    registry = app.state.registry
    _print_startup(s, registry)
    registry.reload_on_sighup()
    try:
        uvicorn.Server(uvicorn.Config(app, **common)).run()
    finally:
        registry.stop_watcher()
    return 0


def _print_startup(s: dict, registry: CampaignRegistry) -> None:
    for name, arn in registry.campaign_arns.items():
        print(f"campaign {arn}  ({registry.specs[name].path})")
        for farn in registry.filter_arns.get(name, []):
            print(f"  filter {farn}")
    auth = "SigV4" if s["auth"] == "sigv4" else "none"
    reload = "off" if s["no_reload"] else f"every {s['reload_interval']:g} s"
    print(f"rankcore serving on http://{s['host']}:{s['port']} (workers {s['workers']}, "
          f"auth {auth}, reload {reload}, SIGHUP reloads)", flush=True)


def serve_main(args) -> int:
    """``rankcore serve``: build the settings from ``args`` and run."""
    s = settings_from_args(args)
    if not s["campaigns"]:
        raise ValueError("no campaign to serve (give --campaign NAME=DIR or a --config file)")
    return serve(s)
