"""The ``rankcore`` command line: ``demo``, ``rank``, ``recommend``, ``info``, ``quantize``,
``serve``, ``batch``, ``train``, ``eval``, ``index``, ``events``.

``main(argv=None) -> int`` is the console-script entry point (``python -m rankcore`` too). Every
subcommand has ``--help``; ``rankcore`` with no arguments prints the help and exits 2 (nothing was
done). A bad argument or a bad model gives a one-line ``rankcore: error: ...`` on stderr and a
non-zero exit status (2 for usage errors, 1 for everything else), never a traceback. Output into
a closed pipe (``rankcore info DIR | head -1``) ends the command quietly with status 141, what a
shell reports for a tool killed by SIGPIPE. One module per group of commands: ``models`` (demo,
rank, info), ``recommend``, ``quantize``, ``serving`` (serve, batch), ``training`` (train,
eval), ``index``, ``events`` (events export).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .args import EXIT_BROKEN_PIPE, PROG, CommandError
from .events import configure_events_parser
from .index import configure_index_parser
from .models import VersionAction, add_model_commands
from .quantize import configure_quantize_parser
from .recommend import configure_recommend_parser
from .serving import cmd_batch, cmd_serve, configure_serve_parser
from .training import configure_eval_parser, configure_train_parser

__all__ = ["main", "build_parser", "configure_serve_parser", "CommandError", "PROG"]


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fast local personalized ranking with Amazon Personalize semantics.")
    parser.add_argument("--version", action=VersionAction,
                        help="print the version, the active backend and SIMD kernel, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    add_model_commands(sub)

    p = sub.add_parser("recommend", help="catalog items for a user, or related items (GetRecommendations)")
    configure_recommend_parser(p)

    p = sub.add_parser("quantize", help="store a model's item table as float16, bfloat16 or int8",
                       description="Copy the model in SRC to DST with its item table stored in "
                                   "--dtype (2x fewer bytes for float16/bfloat16, 4x for int8).")
    configure_quantize_parser(p)

    p = sub.add_parser("serve", help="serve campaigns over the Personalize runtime HTTP API",
                       description="Serve GetPersonalizedRanking (POST /personalize-ranking) for "
                                   "one or more campaigns, as boto3 and the AWS CLI call it with "
                                   "--endpoint-url. Also GET /ping and GET /metrics.")
    configure_serve_parser(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("train", help="train a model from Personalize datasets (implicit ALS or BPR)",
                       description="Read Personalize's Interactions (and optionally Items and Users) "
                                   "datasets, train with implicit, write a model directory.")
    configure_train_parser(p)

    p = sub.add_parser("eval", help="Personalize's solution metrics of a model on interactions",
                       description="Hold out 10%% of the users (seeded), fold in the oldest 90%% of "
                                   "each one's interactions, rank the whole catalog and score the "
                                   "newest 10%%, beside a popularity baseline.")
    configure_eval_parser(p)

    p = sub.add_parser("index", help="build a faiss index (IVF or HNSW) for a saved model",
                       description="Build an approximate-nearest-neighbour index over a saved "
                                   "model's item vectors (bias included) and store it beside the "
                                   "model (ann.<kind>.faissindex and ann.json).")
    configure_index_parser(p)

    p = sub.add_parser("events", help="event store tools ('rankcore events export')",
                       description="Work with the event store of 'rankcore serve --event-store'.")
    configure_events_parser(p)

    sub.add_parser("batch", help="batch inference over JSON Lines (see 'rankcore batch --help')",
                   add_help=False)
    return parser


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
