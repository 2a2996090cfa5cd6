"""``rankcore demo``, ``rank`` and ``info``: the commands over a model directory."""
from __future__ import annotations

import argparse
import json
import os

from .. import __version__, build_info
from ..core.quantize import DTYPES as TABLE_DTYPES
from ..datasets import synthetic
from ..model import load_model
from ..personalize import Campaign, Client
from .args import (PROG, CommandError, context_arg, filter_values_arg, merge_dicts, metadata_arg,
                   positive_int)

__all__ = ["add_model_commands", "add_request_options", "cmd_demo", "cmd_rank", "cmd_info", "backend_description", "model_info", "VersionAction"]


# --------------------------------------------------------------------------- commands
def load_model_dir(path: str):
    if not os.path.isdir(path):
        raise CommandError(f"{path}: not a directory")
    return load_model(path, mmap=True)


def cmd_demo(args) -> int:
    if os.path.exists(os.path.join(args.dir, "manifest.json")) and not args.force:
        raise CommandError(f"{args.dir} already holds a model (use --force to overwrite)")
    model = synthetic(n_users=args.users, n_items=args.items, dim=args.dim, seed=args.seed,
                      item_bias=args.item_bias)
    model.save(args.dir, dtype=args.dtype)
    print(f"wrote a demo model to {args.dir}: {model.n_items} items ({args.dtype or 'float32'} table), "
          f"{model.n_users} users, dim {model.dim}, context DEVICE, item metadata "
          f"{', '.join(model.item_columns)}, interaction histories")
    print(f"try: rankcore rank --model {args.dir} --user-id 12 --input-list 3 4 10 8 12 7")
    return 0


def add_request_options(request: dict, args, campaign) -> None:
    """``--context``, ``--filter-expression``/``--filter-values`` and ``--metadata-columns`` into
    a request dict (the filter is created on ``campaign``)."""
    context = merge_dicts(args.context)
    if context:
        request["context"] = context
    if args.filter_values is not None and args.filter_expression is None:
        raise CommandError("--filter-values needs --filter-expression")
    if args.filter_expression is not None:
        request["filterArn"] = campaign.create_filter("cli", args.filter_expression)
        filter_values = merge_dicts(args.filter_values)
        if filter_values:
            request["filterValues"] = filter_values
    meta = merge_dicts(args.metadata_columns)
    if meta:
        request["metadataColumns"] = meta


def cmd_rank(args) -> int:
    model = load_model_dir(args.model)
    campaign = Campaign(model, name=args.campaign_name)
    request = {"campaignArn": campaign.arn, "userId": args.user_id, "inputList": args.input_list}
    add_request_options(request, args, campaign)
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


class VersionAction(argparse.Action):
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
        "dtype": table.dtype,
        "item_table_bytes": int(table.nbytes),
        "item_bias": table.bias is not None,
        "context_fields": {f: len(ct.index) for f, ct in model.context.items()},
        "item_columns": {n: c.kind for n, c in model.item_columns.items()},
        "user_columns": {n: c.kind for n, c in model.user_columns.items()},
        "interactions": int(history.items.shape[0]),
        "event_types": list(history.event_types),
    }
    return info


def cmd_info(args) -> int:
    info = model_info(load_model_dir(args.dir), args.dir)
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
    print(f"item table     {info['dtype']}, {info['item_table_bytes']} bytes")
    print(f"context        {fmt({k: f'{v} values' for k, v in info['context_fields'].items()})}")
    print(f"item metadata  {fmt(info['item_columns'])}")
    print(f"user metadata  {fmt(info['user_columns'])}")
    print(f"interactions   {info['interactions']}"
          + (f" ({', '.join(info['event_types'])})" if info["event_types"] else ""))
    print(f"ranking        {backend_description(build)}")
    return 0


def add_model_commands(sub) -> None:
    """Add ``demo``, ``rank`` and ``info`` to the ``rankcore`` subparsers ``sub``."""
    p = sub.add_parser("demo", help="write the synthetic demo model to a directory",
                       description="Write a synthetic model with planted genre preferences, a DEVICE "
                                   "context, item metadata (GENRE, PRICE, CREATION_TIMESTAMP), user "
                                   "AGE and interaction histories.")
    p.add_argument("dir", metavar="DIR", help="directory to write the model into (created if missing)")
    p.add_argument("--users", type=positive_int, default=1000, help="number of users (default 1000)")
    p.add_argument("--items", type=positive_int, default=10000, help="number of items (default 10000)")
    p.add_argument("--dim", type=positive_int, default=64, help="embedding dimension (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--item-bias", action="store_true", help="add a popularity bias per item")
    p.add_argument("--dtype", choices=TABLE_DTYPES, default=None,
                   help="storage dtype of the item table (default float32; see rankcore quantize)")
    p.add_argument("--force", action="store_true", help="overwrite a model already in DIR")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("rank", help="rank items for a user (GetPersonalizedRanking)",
                       description="Rank --input-list for --user-id and print the JSON that "
                                   "'aws personalize-runtime get-personalized-ranking' prints.")
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    p.add_argument("--user-id", required=True, help="the user to rank for")
    p.add_argument("--input-list", required=True, nargs="+", metavar="ITEM_ID",
                   help="the item IDs to rank (unknown IDs come last, as the service puts them)")
    p.add_argument("--context", type=context_arg, action="append", metavar="KEY=VALUE|JSON",
                   help="context entries: DEVICE=desktop (repeatable, or comma-separated) or "
                        "a JSON object as the AWS CLI takes it, '{\"DEVICE\": \"mobile phone\"}'")
    p.add_argument("--filter-expression", metavar="EXPR",
                   help='a filter expression, e.g. \'EXCLUDE ItemID WHERE Items.GENRE IN ($G)\'')
    p.add_argument("--filter-values", type=filter_values_arg, action="append",
                   metavar="KEY=VALUE|JSON",
                   help='placeholder values: G=\'"Comedy","Drama"\' (one per flag, repeatable; the '
                        'value is everything after the first =) or a JSON object, e.g. '
                        '\'{"G": "\\"Comedy\\""}\'')
    p.add_argument("--metadata-columns", type=metadata_arg, action="append", metavar="ITEMS=COLS|JSON",
                   help='item metadata to return: ITEMS=GENRE,PRICE or a JSON object, '
                        'e.g. \'{"ITEMS": ["GENRE"]}\'')
    p.add_argument("--campaign-name", default="rankcore", help="name in the campaign ARN (default rankcore)")
    p.add_argument("--max-input-items", type=positive_int, default=None,
                   help="enforce the service's item limit (default: no limit, as in the library)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("info", help="describe a model directory",
                       description="Print what a model holds: counts, dimension, dtype, context "
                                   "fields, metadata columns and interactions.")
    p.add_argument("dir", metavar="DIR", help="model directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
