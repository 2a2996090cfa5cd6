"""``rankcore quantize SRC DST --dtype DTYPE``: rewrite a model with its item table stored compressed.

The item table is stored as float32, float16, bfloat16 or int8 (symmetric, one float32 scale per
row; the rounding rules are in ``rankcore.core.quantize``); every other part of the model is copied
as it is. A table already compressed is dequantised and rounded again.
"""
from __future__ import annotations

import argparse
import os

from ..core.quantize import DTYPES
from ..model import load_model
from .args import CommandError

__all__ = ["configure_quantize_parser", "cmd_quantize"]


def configure_quantize_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="model directory to read")
    p.add_argument("dst", metavar="DST", help="directory to write the converted model into")
    p.add_argument("--dtype", required=True, choices=DTYPES, help="storage dtype of the item table")
    p.add_argument("--force", action="store_true", help="overwrite a model already in DST")
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args) -> int:
    if not os.path.isdir(args.src):
        raise CommandError(f"{args.src}: not a directory")
    if os.path.realpath(args.src) == os.path.realpath(args.dst):
        raise CommandError("SRC and DST must be different directories (SRC is memory-mapped while DST is written)")
    if os.path.exists(os.path.join(args.dst, "manifest.json")) and not args.force:
        raise CommandError(f"{args.dst} already holds a model (use --force to overwrite)")
    model = load_model(args.src, mmap=True)
    before = model.item_table.nbytes
    try:
        model.save(args.dst, dtype=args.dtype)
    except ValueError as exc:  # a value beyond the float16/bfloat16 range
        raise CommandError(f"{args.src}: cannot store the item table as {args.dtype}: {exc}") from None
    after = load_model(args.dst, mmap=True).item_table.nbytes
    print(f"wrote {args.dst}: item table {model.item_table.dtype} -> {args.dtype}, "
          f"{before} -> {after} bytes ({before / after:.2f}x smaller)")
    return 0
