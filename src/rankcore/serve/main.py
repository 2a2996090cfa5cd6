"""``rankcore serve``: build the campaigns and the app from the settings, run uvicorn.

One process by default. Ranking is CPU-bound Python around native kernels, so one process serves
at most one core; ``--workers N`` (or ``auto``) starts N uvicorn workers, each of which builds its
own registry through the factory :func:`app_from_environment` (settings passed as JSON in
``RANKCORE_SERVE_SETTINGS``). With workers, ``/metrics`` aggregates every worker (prometheus_client
multiprocess mode over a private directory) and SIGHUP restarts the workers (uvicorn's
supervisor, logged) instead of swapping models in place. The listening socket is bound before the
"serving on" line is printed, so a port in use is one clear error; SIGINT exits 130 whatever the
worker count. Connections go through ``protocol.GuardedProtocol`` (timeouts, size limits and a
connection cap from the settings). Without authentication the server warns unless it binds a
loopback address.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import resource
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from ..core import backend as _backend
from ..core import native
from .app import create_app
from .config import console_enabled, resolve_workers, settings_from_args
from .events import open_feed
from .metrics import Metrics, start_multiprocess_dir
from .protocol import DEFAULT_LIMITS, GuardedProtocol
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
    feed = open_feed(s)
    try:
        return CampaignRegistry(specs, region=s["region"], account=s["account"],
                                max_input_items=s["max_input_items"], backend=s["backend"],
                                reload_timeout=s["reload_timeout"], events=feed,
                                tracking_ids=s.get("tracking_ids"))
    except BaseException:
        feed.close()
        raise


def app_from_settings(s: dict) -> Starlette:
    """The app of one process; starts the model watcher (``_sighup``: also for SIGHUP alone)."""
    registry = registry_from_settings(s)
    verifier = None
    if s["auth"] == "sigv4":
        verifier = SigV4Verifier(load_credentials(s["credentials"]), region=s["region"],
                                 allow_unsigned_payload=s["allow_unsigned_payload"])
    app = create_app(registry, verifier=verifier, metrics=Metrics(), max_body_bytes=s["max_body_bytes"],
                     console=console_enabled(s))
    if not s["no_reload"] or s.get("_sighup"):
        registry.start_watcher(None if s["no_reload"] else s["reload_interval"])
    registry.events.start()  # applies the other workers' events
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
    """Run the server until SIGINT (returns 130) or SIGTERM (0). ``s``: ``settings_from_args``."""
    _configure_logging(s["log_level"])
    s = dict(s, workers=resolve_workers(s["workers"]))
    if s["auth"] == "sigv4" and not s["credentials"]:
        raise ValueError("--auth sigv4 needs --credentials FILE")
    if s["auth"] == "none" and s["host"] not in _LOOPBACK:
        print(f"warning: serving on {s['host']} without authentication: anyone who can reach this "
              "address can query the models (use --auth sigv4 --credentials FILE)", file=sys.stderr)
    limits = {k: s[k] for k in DEFAULT_LIMITS}
    limits["max_connections"] = _connection_cap(limits["max_connections"])
    common = dict(loop="uvloop", http=GuardedProtocol, access_log=False, log_level=s["log_level"],
                  lifespan="off", server_header=False, timeout_keep_alive=s["idle_timeout"],
                  proxy_headers=False)  # nothing reads the client address or scheme
    if s["workers"] > 1:
        # each worker builds its own registry (and watcher) from the settings
        registry = registry_from_settings(s)  # fail fast, and print the ARNs, in the parent
        sock = _bind(s["host"], s["port"])
        _print_startup(s, registry)
        registry.events.close()
        del registry
        start_multiprocess_dir()  # before any worker imports prometheus_client
        os.environ[_SETTINGS_ENV] = json.dumps(s)
        config = uvicorn.Config(WORKER_FACTORY, factory=True, workers=s["workers"], **common)
        config.rankcore_limits = limits
        supervisor = _Supervisor(config, sockets=[sock])
        supervisor.run()
        return 130 if supervisor.interrupted else 0
    app = app_from_settings(dict(s, _sighup=True))
    registry = app.state.registry
    sock = _bind(s["host"], s["port"])
    _print_startup(s, registry)
    registry.reload_on_sighup()
    config = uvicorn.Config(app, **common)
    config.rankcore_limits = limits
    try:
        uvicorn.Server(config).run(sockets=[sock])  # re-raises SIGINT as KeyboardInterrupt: 130
    finally:
        registry.stop_watcher()
    return 0


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, logging SIGHUP restarts and remembering a SIGINT."""

    interrupted = False

    def handle_int(self) -> None:
        self.interrupted = True
        super().handle_int()

    def handle_hup(self) -> None:
        log.warning("SIGHUP: restarting the %d workers (each loads the models again)", len(self.processes))
        super().handle_hup()
        log.warning("SIGHUP: workers restarted")


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a port in use is a one-line error before anything prints."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _connection_cap(wanted: int) -> int:
    """``max_connections``, lowered to what the open-file limit allows (with room for models)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - 64))


def _kernel(backend: str | None) -> str:
    """The backend serving requests, and the SIMD kernel for ``cpp`` (as ``build_info`` says)."""
    name = _backend.resolve_name(backend)
    if name == "cpp" and native.HAS_NATIVE:
        return f"cpp, {native.core.build_info().get('kernel')} kernel"
    return name


def _print_startup(s: dict, registry: CampaignRegistry) -> None:
    for name, arn in registry.campaign_arns.items():
        print(f"campaign {arn}  ({registry.specs[name].path})")
        for farn in registry.filter_arns.get(name, []):
            print(f"  filter {farn}")
        campaign = registry.campaigns[name]
        print(f"  tracking ID {campaign.tracking_id}  (PutEvents)")
        print(f"  items dataset {campaign.items_dataset_arn}  (PutItems)")
        print(f"  users dataset {campaign.users_dataset_arn}  (PutUsers)")
    feed = registry.events
    if feed.in_memory:
        shared = "" if s["workers"] == 1 else "; each worker keeps its own, give --event-store to share them"
        print(f"events kept in memory (lost on restart{shared})")
    else:
        print(f"events stored in {feed.store.path}")
    auth = "SigV4" if s["auth"] == "sigv4" else "none"
    reload = "off" if s["no_reload"] else f"every {s['reload_interval']:g} s"
    backend = _kernel(s["backend"])
    print(f"rankcore serving on http://{s['host']}:{s['port']} (backend {backend}, workers "
          f"{s['workers']}, auth {auth}, reload {reload}, SIGHUP reloads)", flush=True)


def serve_main(args) -> int:
    """``rankcore serve``: build the settings from ``args`` and run."""
    s = settings_from_args(args)
    if not s["campaigns"]:
        raise ValueError("no campaign to serve (give --campaign NAME=DIR or a --config file)")
    return serve(s)
