"""``rankcore train`` and ``rankcore eval``: train from Personalize datasets, judge with its metrics.

``configure_train_parser(p)`` / ``configure_eval_parser(p)`` add the options to an argparse
parser and set ``func``; ``cmd_train(args)`` / ``cmd_eval(args)`` run them and return the exit
status. Bad data raises ``ValueError`` (the main command line prints it as one line). Inferred
column types are printed to stderr; metrics go to stdout as a table, or with ``--json`` as one
object ``{"model": {...}, "popularity": {...}, "users": N}``. ``train --eval`` holds the split's
truth out of training, evaluates, and stores the metrics in the model's ``training``.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..evaluation import evaluate
from ..evaluation.metrics import METRIC_NAMES
from ..evaluation.protocol import evaluate_split, split_interactions
from ..model import load_model
from ..train.fit import ALGORITHMS, interaction_mask, train
from ..train.readers import read_interactions, read_items, read_users

__all__ = ["configure_train_parser", "cmd_train", "configure_eval_parser", "cmd_eval",
           "format_metrics"]


def _dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interactions", required=True, metavar="FILE",
                   help="Interactions dataset (CSV, CSV.gz or Parquet)")
    p.add_argument("--interactions-schema", metavar="FILE",
                   help="Personalize schema (Avro JSON) for the interactions; default: inferred")
    p.add_argument("--seed", type=int, default=0, help="seed (training and evaluation split)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")


def configure_train_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _dataset_options(p)
    p.add_argument("--items", metavar="FILE", help="Items dataset (metadata columns)")
    p.add_argument("--items-schema", metavar="FILE", help="Personalize schema (Avro JSON) for the items")
    p.add_argument("--users", metavar="FILE", help="Users dataset (metadata columns)")
    p.add_argument("--users-schema", metavar="FILE", help="Personalize schema (Avro JSON) for the users")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="als", help="implicit's ALS or BPR (default als)")
    p.add_argument("--factors", type=int, default=64, help="embedding dimension (default 64)")
    p.add_argument("--iterations", type=int, default=15, help="training iterations (default 15)")
    p.add_argument("--regularization", type=float, default=None, help="default 0.01")
    p.add_argument("--alpha", type=float, default=1.0, help="ALS confidence weight")
    p.add_argument("--learning-rate", type=float, default=0.01, help="BPR learning rate")
    p.add_argument("--event-type", default=None, help="train on this event type only")
    p.add_argument("--event-value-threshold", type=float, default=None,
                   help="train on interactions with EVENT_VALUE >= this")
    p.add_argument("--threads", type=int, default=1,
                   help="training threads (1: bit-identical models for a seed; 0: all cores)")
    p.add_argument("--eval", action="store_true",
                   help="hold out Personalize's evaluation split, then print the metrics")
    p.set_defaults(func=cmd_train)
    return p


def configure_eval_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    _dataset_options(p)
    p.add_argument("--exclude-seen", action="store_true",
                   help="leave each user's input items out of the top 25")
    p.set_defaults(func=cmd_eval)
    return p


def format_metrics(result: dict) -> str:
    """A two-column table: each metric for the model and the popularity baseline."""
    width = max(len(n) for n in METRIC_NAMES)
    lines = [f"{'metric':<{width}}  {'model':>8}  {'popularity':>10}"]
    for name in METRIC_NAMES:
        lines.append(f"{name:<{width}}  {result['model'][name]:>8.4f}  "
                     f"{result['popularity'][name]:>10.4f}")
    lines.append(f"held-out users: {result['users']}")
    return "\n".join(lines)


def _print_result(result: dict, as_json: bool) -> None:
    print(json.dumps(result, sort_keys=True) if as_json else format_metrics(result))


def _report_types(*datasets) -> None:
    for ds in datasets:
        if ds is not None and ds.inferred:
            print(ds.describe(), file=sys.stderr)


def cmd_train(args) -> int:
    inter = read_interactions(args.interactions, args.interactions_schema)
    items = read_items(args.items, args.items_schema) if args.items else None
    users = read_users(args.users, args.users_schema) if args.users else None
    _report_types(inter, items, users)
    options = dict(algorithm=args.algorithm, factors=args.factors, iterations=args.iterations,
                   regularization=args.regularization, alpha=args.alpha,
                   learning_rate=args.learning_rate, event_type=args.event_type,
                   event_value_threshold=args.event_value_threshold, seed=args.seed,
                   num_threads=args.threads)
    if not args.eval:
        model = train(inter, items, users, **options)
        model.save(args.out)
        print(f"model written to {args.out}: {model.n_items} items, {model.n_users} users, "
              f"logit scale {model.training['logit_scale']:.4g}", file=sys.stderr)
        return 0
    use = interaction_mask(inter.frame, args.event_type, args.event_value_threshold)
    split = split_interactions(inter.frame, seed=args.seed, use=use)
    model = train(inter, items, users, exclude=split.truth_mask, **options)
    result = evaluate_split(model, inter.frame, split, use=use)
    model.training["evaluation"] = result
    model.save(args.out)
    _print_result(result, args.json)
    return 0


def cmd_eval(args) -> int:
    model = load_model(args.model)
    inter = read_interactions(args.interactions, args.interactions_schema)
    _report_types(inter)
    params = model.training.get("params", {})
    use = interaction_mask(inter.frame, params.get("event_type"), params.get("event_value_threshold"))
    result = evaluate(model, inter.frame, use=use, seed=args.seed, exclude_seen=args.exclude_seen)
    _print_result(result, args.json)
    return 0
