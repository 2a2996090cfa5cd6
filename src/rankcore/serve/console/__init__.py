"""The "Test campaign" console of ``rankcore serve``: a page to try a campaign in a browser.

``GET /console`` serves ``index.html`` (with ``console.css`` and ``console.js`` beside it, package
data: plain HTML, CSS and JavaScript, nothing fetched from elsewhere). The page calls the same
JSON routes boto3 calls (``POST /personalize-ranking``, ``POST /recommendations``) and reads the
served campaigns, their filters, context fields and item columns from ``GET /console/campaigns``.
The console is on by default and off with ``--no-console``; with ``--auth sigv4`` it is off unless
``--console`` turns it on, since the page cannot sign its requests.
"""
from __future__ import annotations

import uuid
from importlib import resources

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["console_routes"]

#: Files of the page: URL name -> content type.
_FILES = {"index.html": "text/html; charset=utf-8", "console.css": "text/css; charset=utf-8",
          "console.js": "text/javascript; charset=utf-8"}
#: Context values listed per field at most (suggestions in the page; any value may be typed).
MAX_CONTEXT_VALUES = 200


def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def _headers(content_type: str) -> dict:
    # no-cache: a reloaded server serves its own page, never a stale one from the browser cache
    return {"content-type": content_type, "cache-control": "no-cache",
            "x-content-type-options": "nosniff", "x-amzn-RequestId": str(uuid.uuid4())}


def describe_campaigns(registry) -> dict:
    """What the page needs to build its forms: one entry per served campaign, sorted by name."""
    out = []
    for name, campaign in sorted(registry.campaigns.items()):
        model = campaign.model
        filters = [{"name": arn.rsplit("/", 1)[-1], "arn": arn, "expression": plan.expression,
                    "placeholders": sorted(plan.placeholders)}
                   for arn, plan in sorted(campaign.filters.items())]
        context = {field: [str(v) for v in list(table.values)[:MAX_CONTEXT_VALUES]]
                   for field, table in model.context.items()}
        out.append({"name": name, "arn": campaign.arn, "filters": filters, "context": context,
                    "itemColumns": sorted(model.item_columns)})
    return {"campaigns": out}


def console_routes(registry) -> list:
    """The Starlette routes of the console over ``registry`` (a ``CampaignRegistry``)."""
    pages = {name: (_read(name), ctype) for name, ctype in _FILES.items()}  # read once, at start

    def static(name: str):
        body, ctype = pages[name]

        async def endpoint(request: Request) -> Response:
            return Response(body, headers=_headers(ctype))
        return endpoint

    async def campaigns(request: Request) -> Response:
        return Response(orjson.dumps(describe_campaigns(registry)), headers=_headers("application/json"))

    routes = [Route("/console", static("index.html"), methods=["GET", "HEAD"]),
              Route("/console/campaigns", campaigns, methods=["GET"])]
    routes += [Route(f"/console/{name}", static(name), methods=["GET", "HEAD"])
               for name in _FILES if name != "index.html"]
    return routes
