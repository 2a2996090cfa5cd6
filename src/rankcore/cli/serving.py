"""``rankcore serve`` and ``rankcore batch``: their options and the lazy hand-over to their layers."""
from __future__ import annotations

import argparse
import sys

from ..personalize import DEFAULT_ACCOUNT, DEFAULT_REGION
from .args import PROG, CommandError, port, positive_float, positive_int, workers

__all__ = ["configure_serve_parser", "cmd_serve", "cmd_batch"]


def cmd_serve(args) -> int:
    try:
        from ..serve import serve_main  # lazy: needs the optional server extra (Starlette, uvicorn)
    except ImportError as exc:
        raise CommandError(f"rankcore serve needs the server extra: pip install 'rankcore[server]' ({exc})")
    return serve_main(args)


def cmd_batch(argv: list) -> int:
    try:
        from .. import batch  # lazy: needs orjson (the batch extra)
    except ImportError as exc:
        print(f"{PROG} batch: batch inference is not available in this build ({exc})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"{PROG} batch",
                                     description="Batch inference over JSON Lines (Personalize batch jobs).")
    batch.configure_parser(parser)
    args = parser.parse_args(argv)
    return int(batch.main(args) or 0)



def configure_serve_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--campaign", action="append", default=[], metavar="NAME=DIR",
                   help="serve the model in DIR as campaign NAME (repeatable)")
    p.add_argument("--filter", action="append", default=[], metavar="[CAMPAIGN:]NAME=EXPR",
                   help="create filter NAME on every campaign (or only on CAMPAIGN) (repeatable)")
    p.add_argument("--config", metavar="FILE",
                   help="JSON file with 'campaigns' {NAME: DIR} and 'filters' {NAME: EXPR}, and "
                        "optionally any other option by its long name (flags given on the command "
                        "line win)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=None, help="port (default 8080)")
    p.add_argument("--workers", type=workers, default=None, metavar="N|auto",
                   help="worker processes, or 'auto' for one per CPU (default 1: one process, "
                        "whose /metrics cover every request)")
    p.add_argument("--region", default=None, help=f"region in the ARNs (default {DEFAULT_REGION})")
    p.add_argument("--account", default=None, help=f"account in the ARNs (default {DEFAULT_ACCOUNT})")
    p.add_argument("--max-input-items", type=positive_int, default=None,
                   help="inputList limit (default 500, the service's; 50 with metadata columns)")
    p.add_argument("--auth", choices=("none", "sigv4"), default=None,
                   help="request authentication (default none)")
    p.add_argument("--credentials", metavar="FILE",
                   help="for --auth sigv4: JSON {ACCESS_KEY_ID: SECRET} or an AWS credentials ini file")
    p.add_argument("--reload-interval", type=positive_float, default=None,
                   help="seconds between checks of each model directory for a new model (default 2)")
    p.add_argument("--no-reload", action="store_true", default=None,
                   help="do not watch model directories (SIGHUP still reloads)")
    p.add_argument("--reload-timeout", type=positive_float, default=None,
                   help="seconds a model reload may take before it is given up (default 300)")
    p.add_argument("--max-body-bytes", type=positive_int, default=None,
                   help="largest request body; larger ones get 413 (default 1048576)")
    p.add_argument("--max-header-bytes", type=positive_int, default=None,
                   help="largest request line plus headers; larger get 431 (default 32768)")
    p.add_argument("--idle-timeout", type=positive_float, default=None,
                   help="seconds a connection may wait silent before a request (default 5)")
    p.add_argument("--header-timeout", type=positive_float, default=None,
                   help="seconds to receive a request's headers (default 10)")
    p.add_argument("--body-timeout", type=positive_float, default=None,
                   help="seconds to receive a request's body (default 30)")
    p.add_argument("--max-connections", type=positive_int, default=None,
                   help="open connections at most, per process; more get 503 (default 1000, "
                        "lowered to the open-file limit)")
    p.add_argument("--allow-unsigned-payload", action="store_true", default=None,
                   help="with --auth sigv4: accept UNSIGNED-PAYLOAD (the body is then not signed)")
    console = p.add_mutually_exclusive_group()
    console.add_argument("--console", dest="console", action="store_const", const=True, default=None,
                         help="serve the test page GET /console (on by default; off with --auth "
                              "sigv4 unless given, since the page cannot sign requests)")
    console.add_argument("--no-console", dest="console", action="store_const", const=False,
                         help="do not serve the test page GET /console")
    p.add_argument("--event-store", default=None, metavar="PATH",
                   help="SQLite file holding PutEvents, PutItems and PutUsers (created if missing; "
                        "default: events are kept in memory and lost on restart)")
    p.add_argument("--tracking-id", action="append", default=[], metavar="CAMPAIGN=ID",
                   help="PutEvents tracking ID of CAMPAIGN (repeatable; default: a UUID derived "
                        "from the campaign ARN, printed at start-up)")
    p.add_argument("--event-retention-days", type=positive_float, default=None, metavar="DAYS",
                   help="with --event-store: drop events received more than DAYS ago (default: keep)")
    p.add_argument("--event-retention-rows", type=positive_int, default=None, metavar="N",
                   help="with --event-store: keep only the newest N events (default: keep all)")
    p.add_argument("--event-compact-interval", type=positive_float, default=None, metavar="S",
                   help="seconds between compactions of the event store, which apply the retention "
                        "and keep the newest row per item and user (default 3600)")
    p.add_argument("--backend", default=None, help="kernel backend (cpp, numba, numpy; default: best)")
    p.add_argument("--log-level", default=None, choices=("critical", "error", "warning", "info", "debug"),
                   help="log level (default warning)")

