"""The ``rankcore index DIR`` command: build a faiss index for a saved model and store it there.

``configure_index_parser(p)`` adds the arguments to an ``argparse`` parser, ``cmd_index(args)``
loads the model, builds an :class:`~rankcore.model.ann.AnnIndex`, saves it beside the model
(``ann.<kind>.faissindex`` + ``ann.json``) and prints a JSON summary; it returns the exit status.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..model import load_model
from ..model.ann import KINDS, NORM_SAMPLE, AnnIndex

__all__ = ["configure_index_parser", "cmd_index"]


def configure_index_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model_dir", help="a saved model directory")
    p.add_argument("--kind", choices=KINDS, default="ivf", help="index type (default ivf)")
    p.add_argument("--m", type=int, default=32, help="hnsw: links per node (default 32)")
    p.add_argument("--ef-construction", type=int, default=200, help="hnsw: build beam (default 200)")
    p.add_argument("--ef-search", type=int, default=128, help="hnsw: default search beam (default 128)")
    p.add_argument("--nlist", type=int, default=None, help="ivf: lists (default 4 sqrt(N))")
    p.add_argument("--nprobe", type=int, default=None,
                   help="ivf: default lists probed (default nlist / 160, at least 16)")
    p.add_argument("--threads", type=int, default=None, help="build threads (default all cores)")
    p.add_argument("--norm-sample", type=int, default=NORM_SAMPLE,
                   help=f"rows sampled for the normaliser estimate (default {NORM_SAMPLE})")
    p.set_defaults(func=cmd_index)
    return p


def cmd_index(args) -> int:
    model = load_model(args.model_dir)
    t0 = time.perf_counter()
    index = AnnIndex.build(model, args.kind, m=args.m, ef_construction=args.ef_construction,
                           ef_search=args.ef_search, nlist=args.nlist, nprobe=args.nprobe,
                           threads=args.threads, norm_sample=args.norm_sample)
    seconds = time.perf_counter() - t0
    path = index.save(args.model_dir)
    json.dump({"index": path, "kind": index.kind, "n_items": index.n_items, "dim": index.dim,
               "params": index.params, "build_seconds": round(seconds, 3)}, sys.stdout)
    sys.stdout.write("\n")
    return 0
