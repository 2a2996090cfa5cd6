"""The Starlette application of ``rankcore serve`` (the wire contract: see docs/personalize.md).

Routes: ``POST /personalize-ranking`` (GetPersonalizedRanking, through
``Client.get_personalized_ranking_json``), ``POST /recommendations`` (GetRecommendations, through
``Client.get_recommendations_json``, by Starlette's router), ``POST /events``, ``/items``, ``/users``
(PutEvents, PutItems, PutUsers; serve/events.py), ``GET /ping``, ``GET /metrics`` and the console
(``GET /console``); anything else is 404
``UnknownOperationException``. Errors are ``{"__type": NAME, "message": ...}`` with header
``x-amzn-ErrorType``; every response carries ``x-amzn-RequestId``; a wrong method or a trailing
slash is 404 too (no redirect). Messages are cut to ``MAX_MESSAGE`` characters, so a huge bad
value is never echoed. ``POST /personalize-ranking`` skips Starlette's middleware and router: its
raw ASGI endpoint answers every outcome itself. A body over ``max_body_bytes`` is 413
(``Content-Length`` checked before reading, a chunked body while reading); with a verifier the
POST routes need SigV4, and the signature's headers are checked before the body is read.
``/ping`` and ``/metrics`` never need a signature. With ``console=True`` the test page
``GET /console`` and its files are served too (see the ``console`` package).
"""
from __future__ import annotations

import inspect
import logging
import time
import uuid
from typing import Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import AuthError, InvalidInputException, PersonalizeError
from .console import console_routes
from .events import event_operations
from .metrics import CONTENT_TYPE, Metrics
from .registry import CampaignRegistry
from .sigv4 import SigV4Verifier

__all__ = ["create_app", "error_response"]

log = logging.getLogger(__name__)

_JSON = b"application/json"
#: Longest error message sent: a message quoting a huge bad value is cut here.
MAX_MESSAGE = 1024
#: Default body limit: far above a valid GetPersonalizedRanking (500 IDs of 256 characters).
DEFAULT_MAX_BODY_BYTES = 1 << 20


def _short(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[:MAX_MESSAGE] + f"... ({len(message) - MAX_MESSAGE} more characters)"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _headers(request_id: str, error: str | None = None, content_type: bytes = _JSON,
             length: int = 0) -> list:
    h = [(b"content-type", content_type), (b"x-amzn-requestid", request_id.encode()),
         (b"content-length", str(length).encode())]
    if error is not None:
        h.append((b"x-amzn-errortype", error.encode()))
    return h


def _error_body(name: str, message: str) -> bytes:
    return orjson.dumps({"__type": name, "message": _short(message)})


def error_response(status: int, name: str, message: str) -> Response:
    """A Starlette response in the AWS rest-json error shape."""
    rid = str(uuid.uuid4())
    return Response(_error_body(name, message), status_code=status, media_type="application/json",
                    headers={"x-amzn-RequestId": rid, "x-amzn-ErrorType": name})


async def _read_body(receive, limit: int) -> bytes:
    """The whole request body; ``_TooLarge`` as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise _TooLarge()
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _content_length(scope) -> int | None:
    for k, v in scope["headers"]:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


class _Operation:
    """A raw ASGI endpoint for one POST operation: read body, verify, call, answer."""

    def __init__(self, name: str, handler: Callable, metrics: Metrics, verifier: SigV4Verifier | None,
                 timed: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.name = name
        self.handler = handler
        self.metrics = metrics
        self.verifier = verifier
        self.timed = timed
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        error = None
        try:
            status, payload, rid = 200, *await self._answer(scope, receive)
        except _Disconnected:
            return
        except _TooLarge:
            status, error, rid = 413, "InvalidInputException", str(uuid.uuid4())
            payload = _error_body(error, f"The request body is larger than {self.max_body_bytes} bytes")
        except PersonalizeError as exc:
            status, error, rid = exc.http_status, exc.code, str(uuid.uuid4())
            payload = _error_body(error, exc.message)
        except AuthError as exc:
            status, error, rid = 403, exc.code, str(uuid.uuid4())
            payload = _error_body(error, exc.message)
        except (ValueError, TypeError) as exc:  # user errors by the library's convention
            status, error, rid = 400, "InvalidInputException", str(uuid.uuid4())
            payload = _error_body(error, str(exc))
        except Exception as exc:
            log.exception("%s failed", self.name)
            status, error, rid = 500, "ServiceException", str(uuid.uuid4())
            payload = _error_body(error, f"Internal error ({type(exc).__name__})")
        headers = _headers(rid, error, length=len(payload))
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.metrics.observe(self.name, status, error, time.perf_counter() - t0 if self.timed else None)

    async def _answer(self, scope, receive) -> tuple:
        """Check size and signature headers, read the body, verify, call: ``(payload, request ID)``."""
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            raise _TooLarge()
        headers = _header_dict(scope) if self.verifier is not None else None
        if headers is not None:
            self.verifier.check_headers(headers)  # before a byte of the body is read
        body = await _read_body(receive, self.max_body_bytes)
        if headers is not None:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            self.verifier.verify(scope["method"], raw_path.decode("latin-1"),
                                 scope.get("query_string", b"").decode("latin-1"), headers, body)
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputException(f"Request body is not valid JSON: {exc}") from None
        result = self.handler(params)
        return await result if inspect.isawaitable(result) else result


def _header_dict(scope) -> dict:
    """Lower-case header name -> value (repeated headers joined with commas, spaces squeezed)."""
    headers: dict = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        value = " ".join(v.decode("latin-1").split())
        headers[name] = headers[name] + "," + value if name in headers else value
    return headers


class _App(Starlette):
    """Starlette, except that ``POST /personalize-ranking`` goes straight to its endpoint.

    The endpoint is a raw ASGI callable that answers every outcome itself (errors included), so
    the middleware stack and router would only add per-request cost on the hot route; every other
    request takes Starlette's usual path.
    """

    def __init__(self, hot_path: Callable, **kwargs):
        super().__init__(**kwargs)
        self.hot_path = hot_path

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and scope["path"] == "/personalize-ranking" and scope["method"] == "POST"):
            await self.hot_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(registry: CampaignRegistry, *, verifier: SigV4Verifier | None = None,
               metrics: Metrics | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, console: bool = False) -> Starlette:
    """The Starlette application serving ``registry`` (routes in the module docstring)."""
    metrics = metrics if metrics is not None else Metrics()
    metrics.attach(registry)

    def get_personalized_ranking(params):
        client = registry.client  # read once: the whole request sees one model
        if not isinstance(params, dict):
            raise InvalidInputException("Request body must be a JSON object")
        return client.get_personalized_ranking_json(params)  # (body bytes, request ID)

    def get_recommendations(params):
        client = registry.client  # read once, as for ranking
        if not isinstance(params, dict):
            raise InvalidInputException("Request body must be a JSON object")
        return client.get_recommendations_json(params)  # (body bytes, request ID)

    async def ping(request: Request) -> Response:
        body = orjson.dumps({"status": "ok", "campaigns": sorted(registry.campaign_arns.values())})
        return Response(body, media_type="application/json",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE,
                                                   "x-amzn-RequestId": str(uuid.uuid4())})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        status = 404 if exc.status_code in (404, 405) else exc.status_code  # 405 too: no such operation
        metrics.observe("Unknown", status, "UnknownOperationException", None)
        return error_response(status, "UnknownOperationException",
                              f"{request.method} {request.url.path[:100]} is not an operation of this service")

    async def server_error(request: Request, exc: Exception) -> Response:
        metrics.observe("Unknown", 500, "ServiceException", None)
        return error_response(500, "ServiceException", "Internal error")

    ranking = _Operation("GetPersonalizedRanking", get_personalized_ranking, metrics, verifier,
                         timed=True, max_body_bytes=max_body_bytes)
    routes = [
        Route("/personalize-ranking", ranking, methods=["POST"]),
        Route("/recommendations", _Operation("GetRecommendations", get_recommendations, metrics,
                                             verifier, timed=True, max_body_bytes=max_body_bytes),
              methods=["POST"]),
        Route("/ping", ping, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    if console:
        routes += console_routes(registry)
    if registry.events is not None:  # PutEvents, PutItems, PutUsers (serve/events.py)
        routes += [Route(path, _Operation(name, handler, metrics, verifier, max_body_bytes=max_body_bytes),
                         methods=["POST"]) for path, name, handler in event_operations(registry.events)]
    app = _App(ranking, routes=routes,
               exception_handlers={HTTPException: http_error, Exception: server_error})
    app.router.redirect_slashes = False  # a redirect would carry no request ID; 404 instead
    app.state.registry = registry
    app.state.metrics = metrics
    return app
