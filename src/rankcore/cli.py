"""The ``rankcore`` command line: ``demo``, ``rank``, ``info``, ``serve`` and ``batch``.

``main(argv=None) -> int`` is the console-script entry point (``python -m rankcore`` too). Every
subcommand has ``--help``; ``rankcore`` with no arguments prints the help and exits 2 (nothing was
done). A bad argument or a bad model gives a one-line ``rankcore: error: ...`` on stderr and a
non-zero exit status (2 for usage errors, 1 for everything else), never a traceback. Output into
a closed pipe (``rankcore info DIR | head -1``) ends the command quietly with status 141, what a
shell reports for a tool killed by SIGPIPE. ``--version`` and ``info`` name the active backend and
SIMD kernel.

``rankcore rank`` prints what ``aws personalize-runtime get-personalized-ranking`` prints for the
same request (the response body, 4-space indented JSON). ``rankcore serve`` is documented in
``rankcore.serve``; ``rankcore batch`` is provided by ``rankcore.batch`` and imported only when
used.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

from . import __version__, build_info
from .datasets import synthetic
from .model import load_model
from .personalize import DEFAULT_ACCOUNT, DEFAULT_REGION, Campaign, Client

PROG = "rankcore"

#: Exit status after a write into a closed pipe: 128 + SIGPIPE, what a shell reports for a tool
#: that SIGPIPE killed (Python ignores SIGPIPE, so it would otherwise see BrokenPipeError).
EXIT_BROKEN_PIPE = 128 + int(getattr(signal, "SIGPIPE", 13))


class CommandError(Exception):
    """A user error: printed as one line, exit status 1."""


# --------------------------------------------------------------------------- argument types
def parse_key_values(text: str, what: str) -> dict:
    """``"K=V"`` or ``"K1=V1,K2=V2"`` (the AWS CLI shorthand for a string map) -> dict."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"{what} must look like KEY=VALUE, got {text!r}")
        out[key.strip()] = value
    return out


def _json_object_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{what} must be a JSON object, got {text!r}")
    return value


def _is_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def _string_map(value: dict, what: str) -> dict:
    for k, v in value.items():
        if not isinstance(v, str):
            raise argparse.ArgumentTypeError(f"{what} value for {k!r} must be a string, got {v!r}")
    return value


def _context_arg(text: str) -> dict:
    """``DEVICE=mobile`` or ``K1=V1,K2=V2`` (the AWS CLI shorthand), or the JSON object the AWS
    CLI also takes: ``{"DEVICE": "mobile phone"}``."""
    if _is_json(text):
        return _string_map(_json_object_arg(text, "--context"), "--context")
    return parse_key_values(text, "--context")


def _metadata_arg(text: str) -> dict:
    """``ITEMS=genre`` or ``ITEMS=genre,price`` -> ``{"ITEMS": ["genre", "price"]}``; or the JSON
    object the AWS CLI takes: ``{"ITEMS": ["genre", "price"]}``."""
    if _is_json(text):
        value = _json_object_arg(text, "--metadata-columns")
        for k, v in value.items():
            if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
                raise argparse.ArgumentTypeError(
                    f"--metadata-columns value for {k!r} must be a list of column names, got {v!r}")
        return value
    key, sep, cols = text.partition("=")
    if not sep or not key.strip() or not cols:
        raise argparse.ArgumentTypeError(f"--metadata-columns must look like ITEMS=col1,col2 or "
                                         f'{{"ITEMS": ["col1", "col2"]}}, got {text!r}')
    return {key.strip(): [c for c in cols.split(",") if c]}


def _filter_values_arg(text: str) -> dict:
    """A JSON object ``{"G": "\"Comedy\""}``, or one ``KEY=VALUE`` per flag: everything after the
    first ``=`` is the value, commas included (``G="Comedy","Drama"``)."""
    if _is_json(text):
        return _string_map(_json_object_arg(text, "--filter-values"), "--filter-values")
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"--filter-values must look like KEY=VALUE or a JSON object, got {text!r}")
    return {key.strip(): value}


def _workers(text: str):
    """``--workers``: a positive integer or ``auto`` (resolved by ``rankcore.serve``)."""
    return "auto" if text.strip().lower() == "auto" else _positive_int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _merge_dicts(dicts) -> dict | None:
    if not dicts:
        return None
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, list) and isinstance(out.get(k), list):
                out[k] = out[k] + v
            else:
                out[k] = v
    return out


# --------------------------------------------------------------------------- commands
def _load(path: str):
    if not os.path.isdir(path):
        raise CommandError(f"{path}: not a directory")
    return load_model(path, mmap=True)


def cmd_demo(args) -> int:
    if os.path.exists(os.path.join(args.dir, "manifest.json")) and not args.force:
        raise CommandError(f"{args.dir} already holds a model (use --force to overwrite)")
    model = synthetic(n_users=args.users, n_items=args.items, dim=args.dim, seed=args.seed,
                      item_bias=args.item_bias)
    model.save(args.dir)
    print(f"wrote a demo model to {args.dir}: {model.n_items} items, {model.n_users} users, "
          f"dim {model.dim}, context DEVICE, item metadata "
          f"{', '.join(model.item_columns)}, interaction histories")
    print(f"try: rankcore rank --model {args.dir} --user-id 12 --input-list 3 4 10 8 12 7")
    return 0


def cmd_rank(args) -> int:
    model = _load(args.model)
    campaign = Campaign(model, name=args.campaign_name)
    request = {"campaignArn": campaign.arn, "userId": args.user_id, "inputList": args.input_list}
    context = _merge_dicts(args.context)
    if context:
        request["context"] = context
    if args.filter_values is not None and args.filter_expression is None:
        raise CommandError("--filter-values needs --filter-expression")
    if args.filter_expression is not None:
        request["filterArn"] = campaign.create_filter("cli", args.filter_expression)
        filter_values = _merge_dicts(args.filter_values)
        if filter_values:
            request["filterValues"] = filter_values
    meta = _merge_dicts(args.metadata_columns)
    if meta:
        request["metadataColumns"] = meta
    client = Client([campaign], max_input_items=args.max_input_items)
    response = client.get_personalized_ranking(**request)
    response.pop("ResponseMetadata", None)
    print(json.dumps(response, indent=4, ensure_ascii=False))
    return 0


def backend_description(info: dict | None = None) -> str:
    """``"backend cpp, SIMD kernel avx2"``: what ranks, from :func:`rankcore.build_info`."""
    info = build_info() if info is None else info
    kernel = info.get("simd_kernel") or "none (no native extension)"
    return f"backend {info['default_backend']}, SIMD kernel {kernel}"


class _VersionAction(argparse.Action):
    """``--version``: the version and the active backend and kernel (looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{PROG} {__version__} ({backend_description()})")
        parser.exit()


def model_info(model, path: str | None = None) -> dict:
    """What ``rankcore info`` reports, as a dict."""
    table = model.item_table
    history = model.history
    info = {
        "path": path,
        "n_items": model.n_items,
        "n_users": model.n_users,
        "dim": model.dim,
        "padded_dim": int(table.padded_dim),
        "dtype": str(table.data.dtype),
        "item_bias": table.bias is not None,
        "context_fields": {f: len(ct.index) for f, ct in model.context.items()},
        "item_columns": {n: c.kind for n, c in model.item_columns.items()},
        "user_columns": {n: c.kind for n, c in model.user_columns.items()},
        "interactions": int(history.items.shape[0]),
        "event_types": list(history.event_types),
    }
    return info


def cmd_info(args) -> int:
    info = model_info(_load(args.dir), args.dir)
    build = build_info()
    info["backend"] = build["default_backend"]
    info["simd_kernel"] = build["simd_kernel"]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0

    def fmt(d: dict) -> str:
        return ", ".join(f"{k} ({v})" for k, v in d.items()) or "none"

    print(f"model          {args.dir}")
    print(f"items          {info['n_items']}")
    print(f"users          {info['n_users']}")
    print(f"dim            {info['dim']} (padded to {info['padded_dim']}), {info['dtype']}"
          f"{', with item bias' if info['item_bias'] else ''}")
    print(f"context        {fmt({k: f'{v} values' for k, v in info['context_fields'].items()})}")
    print(f"item metadata  {fmt(info['item_columns'])}")
    print(f"user metadata  {fmt(info['user_columns'])}")
    print(f"interactions   {info['interactions']}"
          + (f" ({', '.join(info['event_types'])})" if info["event_types"] else ""))
    print(f"ranking        {backend_description(build)}")
    return 0


def cmd_serve(args) -> int:
    try:
        from .serve import serve_main  # lazy: needs the optional server extra (Starlette, uvicorn)
    except ImportError as exc:
        raise CommandError(f"rankcore serve needs the server extra: pip install 'rankcore[server]' ({exc})")
    return serve_main(args)


def cmd_batch(argv: list) -> int:
    try:
        from . import batch  # lazy: needs orjson (the batch extra)
    except ImportError as exc:
        print(f"{PROG} batch: batch inference is not available in this build ({exc})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"{PROG} batch",
                                     description="Batch inference over JSON Lines (Personalize batch jobs).")
    batch.configure_parser(parser)
    args = parser.parse_args(argv)
    return int(batch.main(args) or 0)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fast local personalized ranking with Amazon Personalize semantics.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, the active backend and SIMD kernel, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="write the synthetic demo model to a directory",
                       description="Write a synthetic model with planted genre preferences, a DEVICE "
                                   "context, item metadata (GENRE, PRICE, CREATION_TIMESTAMP), user "
                                   "AGE and interaction histories.")
    p.add_argument("dir", metavar="DIR", help="directory to write the model into (created if missing)")
    p.add_argument("--users", type=_positive_int, default=1000, help="number of users (default 1000)")
    p.add_argument("--items", type=_positive_int, default=10000, help="number of items (default 10000)")
    p.add_argument("--dim", type=_positive_int, default=64, help="embedding dimension (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--item-bias", action="store_true", help="add a popularity bias per item")
    p.add_argument("--force", action="store_true", help="overwrite a model already in DIR")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("rank", help="rank items for a user (GetPersonalizedRanking)",
                       description="Rank --input-list for --user-id and print the JSON that "
                                   "'aws personalize-runtime get-personalized-ranking' prints.")
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    p.add_argument("--user-id", required=True, help="the user to rank for")
    p.add_argument("--input-list", required=True, nargs="+", metavar="ITEM_ID",
                   help="the item IDs to rank (unknown IDs come last, as the service puts them)")
    p.add_argument("--context", type=_context_arg, action="append", metavar="KEY=VALUE|JSON",
                   help="context entries: DEVICE=desktop (repeatable, or comma-separated) or "
                        "a JSON object as the AWS CLI takes it, '{\"DEVICE\": \"mobile phone\"}'")
    p.add_argument("--filter-expression", metavar="EXPR",
                   help='a filter expression, e.g. \'EXCLUDE ItemID WHERE Items.GENRE IN ($G)\'')
    p.add_argument("--filter-values", type=_filter_values_arg, action="append",
                   metavar="KEY=VALUE|JSON",
                   help='placeholder values: G=\'"Comedy","Drama"\' (one per flag, repeatable; the '
                        'value is everything after the first =) or a JSON object, e.g. '
                        '\'{"G": "\\"Comedy\\""}\'')
    p.add_argument("--metadata-columns", type=_metadata_arg, action="append", metavar="ITEMS=COLS|JSON",
                   help='item metadata to return: ITEMS=GENRE,PRICE or a JSON object, '
                        'e.g. \'{"ITEMS": ["GENRE"]}\'')
    p.add_argument("--campaign-name", default="rankcore", help="name in the campaign ARN (default rankcore)")
    p.add_argument("--max-input-items", type=_positive_int, default=None,
                   help="enforce the service's item limit (default: no limit, as in the library)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("info", help="describe a model directory",
                       description="Print what a model holds: counts, dimension, dtype, context "
                                   "fields, metadata columns and interactions.")
    p.add_argument("dir", metavar="DIR", help="model directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("serve", help="serve campaigns over the Personalize runtime HTTP API",
                       description="Serve GetPersonalizedRanking (POST /personalize-ranking) for "
                                   "one or more campaigns, as boto3 and the AWS CLI call it with "
                                   "--endpoint-url. Also GET /ping and GET /metrics.")
    configure_serve_parser(p)
    p.set_defaults(func=cmd_serve)

    sub.add_parser("batch", help="batch inference over JSON Lines (see 'rankcore batch --help')",
                   add_help=False)
    return parser


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
    p.add_argument("--port", type=_port, default=None, help="port (default 8080)")
    p.add_argument("--workers", type=_workers, default=None, metavar="N|auto",
                   help="worker processes, or 'auto' for one per CPU (default 1: one process, "
                        "whose /metrics cover every request)")
    p.add_argument("--region", default=None, help=f"region in the ARNs (default {DEFAULT_REGION})")
    p.add_argument("--account", default=None, help=f"account in the ARNs (default {DEFAULT_ACCOUNT})")
    p.add_argument("--max-input-items", type=_positive_int, default=None,
                   help="inputList limit (default 500, the service's; 50 with metadata columns)")
    p.add_argument("--auth", choices=("none", "sigv4"), default=None,
                   help="request authentication (default none)")
    p.add_argument("--credentials", metavar="FILE",
                   help="for --auth sigv4: JSON {ACCESS_KEY_ID: SECRET} or an AWS credentials ini file")
    p.add_argument("--reload-interval", type=_positive_float, default=None,
                   help="seconds between checks of each model directory for a new model (default 2)")
    p.add_argument("--no-reload", action="store_true", default=None,
                   help="do not watch model directories (SIGHUP still reloads)")
    p.add_argument("--reload-timeout", type=_positive_float, default=None,
                   help="seconds a model reload may take before it is given up (default 300)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=None,
                   help="largest request body; larger ones get 413 (default 1048576)")
    p.add_argument("--max-header-bytes", type=_positive_int, default=None,
                   help="largest request line plus headers; larger get 431 (default 32768)")
    p.add_argument("--idle-timeout", type=_positive_float, default=None,
                   help="seconds a connection may wait silent before a request (default 5)")
    p.add_argument("--header-timeout", type=_positive_float, default=None,
                   help="seconds to receive a request's headers (default 10)")
    p.add_argument("--body-timeout", type=_positive_float, default=None,
                   help="seconds to receive a request's body (default 30)")
    p.add_argument("--max-connections", type=_positive_int, default=None,
                   help="open connections at most, per process; more get 503 (default 1000, "
                        "lowered to the open-file limit)")
    p.add_argument("--allow-unsigned-payload", action="store_true", default=None,
                   help="with --auth sigv4: accept UNSIGNED-PAYLOAD (the body is then not signed)")
    p.add_argument("--backend", default=None, help="kernel backend (cpp, numba, numpy; default: best)")
    p.add_argument("--log-level", default=None, choices=("critical", "error", "warning", "info", "debug"),
                   help="log level (default warning)")


def _first_command(argv: Sequence[str]) -> int | None:
    for i, a in enumerate(argv):
        if not a.startswith("-"):
            return i
        if a == "--":
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    i = _first_command(argv)
    try:
        if i is not None and argv[i] == "batch":
            return cmd_batch(argv[i + 1:])
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 2
        args = parser.parse_args(argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 130
    except (CommandError, ValueError, LookupError, OSError, TypeError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback for the user
        print(f"{PROG}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to do
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
