"""The ``rankcore batch`` command (also ``python -m rankcore.batch``): its arguments, its exit
codes, and SIGTERM handled like Ctrl-C so that an interrupted job leaves no partial output."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..errors import BatchError
from .chunks import DEFAULT_CHUNK_SIZE
from .job import run
from .local import _STOP
from .partitions import DEFAULT_PARTITION_BYTES


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``rankcore batch`` arguments to ``parser``."""
    parser.description = ("Rank JSON Lines of {userId, itemList, filterValues?, context?} "
                          "like a Personalize batch inference job, or with --job recommendations "
                          "recommend for lines of {userId | itemId, numResults?, filterValues?, "
                          "context?}.")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--input", required=True, action="append",
                        help="input JSON Lines file or glob (repeatable; files ranked in order)")
    parser.add_argument("--output", required=True,
                        help="output JSON Lines file (a directory with --parts)")
    parser.add_argument("--filter-expression", default=None,
                        help="Personalize filter expression applied to every line")
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler: 'local' (start a LocalCluster) or tcp://host:port; "
                             "default: rank in this process")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help=f"lines per kernel call (default {DEFAULT_CHUNK_SIZE})")
    parser.add_argument("--partition-size", type=_size, default=DEFAULT_PARTITION_BYTES,
                        help="input bytes per partition, e.g. 64M (default 64M)")
    parser.add_argument("--parts", action="store_true",
                        help="write part files and a _manifest.json into the OUTPUT directory")
    parser.add_argument("--job", choices=("ranking", "recommendations"), default="ranking",
                        help="ranking: rank each line's itemList (default); recommendations: "
                             "recommend catalog items for each line's userId, or related items "
                             "of its itemId")
    parser.add_argument("--num-results", type=int, default=25,
                        help="recommendations per line without its own numResults (1-500, "
                             "default 25; --job recommendations)")
    parser.add_argument("--quiet", action="store_true",
                        help="print nothing but errors: no progress bar, no summary (the exit "
                             "status still says whether lines failed)")
    return parser


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    mult = units.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if t[-1:] in units else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return value


def main(args: argparse.Namespace) -> int:
    """Run ``rankcore batch``: 0 when every line succeeded, 1 when some failed, 2 on a fatal
    error (one-line message on stderr), 130 when interrupted."""
    prog = "rankcore batch"
    restore = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            _STOP.set()
            raise KeyboardInterrupt

        _STOP.clear()
        restore = signal.signal(signal.SIGTERM, on_term)  # clean up temp files on SIGTERM too
    try:
        summary = run(args.model, args.input, args.output, filter_expression=args.filter_expression,
                      scheduler=args.scheduler, chunk_size=args.chunk_size,
                      partition_bytes=args.partition_size, parts=args.parts, quiet=args.quiet,
                      job=args.job, num_results=args.num_results)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output written", file=sys.stderr)
        return 130
    except (BatchError, OSError, ValueError, ImportError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. a Dask task that kept failing: still one line, no traceback
        print(f"{prog}: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)
    if not args.quiet:
        print(f"{prog}: {summary}", file=sys.stderr)
    return 1 if summary.failed else 0
