"""``rankcore recommend``: GetRecommendations over a model directory, printed as the AWS CLI prints it.

``--user-id`` gives user recommendations, ``--item-id`` related items (a ``--user-id`` beside it is
only the filters' current user). Filters and the promotion's filter are expressions compiled for
this call; the request then goes through ``Client.get_recommendations``, so the service's limits
and errors apply (see docs/personalize.md).
"""
from __future__ import annotations

import argparse
import json

from ..personalize import Campaign, Client
from .args import CommandError, context_arg, filter_values_arg, json_object_arg
from .args import metadata_arg, positive_int
from .models import add_request_options, load_model_dir

__all__ = ["configure_recommend_parser", "cmd_recommend"]


def _promotion_arg(text: str) -> dict:
    return json_object_arg(text, "--promotion")


def configure_recommend_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``rankcore recommend`` arguments to ``p``."""
    p.description = ("Recommend the catalog's best items for --user-id, or items related to "
                     "--item-id, and print the JSON that 'aws personalize-runtime "
                     "get-recommendations' prints.")
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    who = p.add_argument_group("query (at least one)")
    who.add_argument("--user-id", help="recommend for this user (unknown: the cold-start vector)")
    who.add_argument("--item-id", help="related items of this item (never returned itself)")
    p.add_argument("--num-results", type=positive_int, default=25,
                   help="how many items (default 25; 1-500, at most 50 with --metadata-columns)")
    p.add_argument("--context", type=context_arg, action="append", metavar="KEY=VALUE|JSON",
                   help="context entries: DEVICE=desktop (repeatable) or a JSON object")
    p.add_argument("--filter-expression", metavar="EXPR", help="a filter expression")
    p.add_argument("--filter-values", type=filter_values_arg, action="append",
                   metavar="KEY=VALUE|JSON", help="placeholder values of --filter-expression")
    p.add_argument("--promotion", type=_promotion_arg, metavar="JSON",
                   help='one promotion: \'{"name": "sale", "percentPromotedItems": 20, '
                        '"filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN ($G)", '
                        '"filterValues": {"G": "\\"Comedy\\""}}\'')
    p.add_argument("--metadata-columns", type=metadata_arg, action="append", metavar="ITEMS=COLS|JSON",
                   help="item metadata to return: ITEMS=GENRE,PRICE or a JSON object")
    p.add_argument("--campaign-name", default="rankcore", help="name in the campaign ARN (default rankcore)")
    p.set_defaults(func=cmd_recommend)


def _promotion(campaign: Campaign, spec: dict) -> dict:
    """The wire promotion of ``--promotion``: its ``filterExpression`` becomes a filter ARN."""
    spec = dict(spec)
    expression = spec.pop("filterExpression", None)
    if expression is None:
        raise CommandError("--promotion needs a \"filterExpression\"")
    if "filterArn" in spec:
        raise CommandError("--promotion takes a \"filterExpression\", not a \"filterArn\"")
    spec["filterArn"] = campaign.create_filter("cli-promotion", expression)
    return spec


def cmd_recommend(args) -> int:
    if args.user_id is None and args.item_id is None:
        raise CommandError("give --user-id or --item-id")
    campaign = Campaign(load_model_dir(args.model), name=args.campaign_name)
    request = {"campaignArn": campaign.arn, "numResults": args.num_results}
    if args.user_id is not None:
        request["userId"] = args.user_id
    if args.item_id is not None:
        request["itemId"] = args.item_id
    add_request_options(request, args, campaign)
    if args.promotion is not None:
        request["promotions"] = [_promotion(campaign, args.promotion)]
    response = Client([campaign]).get_recommendations(**request)
    response.pop("ResponseMetadata", None)
    print(json.dumps(response, indent=4, ensure_ascii=False))
    return 0
