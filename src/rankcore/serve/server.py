"""A Personalize-runtime-compatible HTTP server (``rankcore serve``), Starlette on uvicorn.

Routes (PERSONALIZE_API.md sections 2-4):

* ``POST /personalize-ranking``: GetPersonalizedRanking. The body is parsed with orjson and handed
  to ``rankcore.Client.get_personalized_ranking``, which validates it (every limit of section 3,
  through ``rankcore._validate``) and ranks; the server only maps exceptions to the wire:
  ``InvalidInputException`` 400, ``ResourceNotFoundException`` 404, with header
  ``x-amzn-ErrorType`` and body ``{"__type": NAME, "message": ...}``. Malformed JSON and wrong
  types are ``InvalidInputException``; an unexpected fault is 500 ``ServiceException``.
* ``POST /recommendations``: GetRecommendations, answered ``InvalidInputException`` (not served).
* ``GET /ping``: health check; ``GET /metrics``: Prometheus text format (requests by operation and
  status, errors by type, a latency histogram of GetPersonalizedRanking, model reloads).
* Anything else: 404 ``UnknownOperationException``.

Every response carries ``x-amzn-RequestId`` (a UUID) and ``Content-Type: application/json``
(``/metrics``: ``text/plain``).

Request path and workers
------------------------
``POST /personalize-ranking`` skips Starlette's middleware and router (the endpoint answers every
outcome, errors included, itself) and takes the body straight from
``Client.get_personalized_ranking_json``; uvicorn runs without its proxy-headers middleware
(nothing reads the client address). Connections are HTTP/1.1 keep-alive (uvicorn's default, 5 s
idle). Ranking is CPU-bound Python around native kernels, so one process serves at most one core:
``--workers N`` (or ``auto``, one per usable CPU) scales across cores. The default stays 1 because
with several workers each one counts only its own requests in ``/metrics`` and SIGHUP restarts
the workers (uvicorn's supervisor) instead of swapping models in place.

Campaigns and hot swap (UpdateCampaign)
---------------------------------------
A :class:`CampaignRegistry` holds one ``Campaign`` per ``NAME=DIR`` and a ``Client`` over all of
them. A reload (the directory's ``manifest.json`` changed, checked every ``reload_interval``
seconds, or SIGHUP) loads the new model in a background thread, builds a new ``Campaign``
(re-creating its filters) and a new ``Client``, then publishes the client with one assignment.
A request takes ``registry.client`` once when it starts, so it is answered wholly by the old or
wholly by the new model, and nothing waits or fails during the swap. A model that fails to load
is logged and the old one keeps serving. ``Model.save`` writes the manifest last, so saving a new
model into the served directory (or renaming a new directory into place) triggers one reload.

Authentication
--------------
Off by default (and the server binds 127.0.0.1). ``auth="sigv4"`` verifies AWS Signature
Version 4 (signing name ``personalize``) on the POST routes with botocore's own signer, against a
credentials file: JSON ``{"ACCESS_KEY_ID": "SECRET", ...}`` or an AWS-style ini file
(``[profile]`` sections with ``aws_access_key_id`` / ``aws_secret_access_key``). Rejections are
403 ``MissingAuthenticationTokenException``, ``UnrecognizedClientException`` (unknown key) or
``InvalidSignatureException`` (wrong secret, altered request, clock skew over 5 minutes), as AWS
sends them. ``/ping`` and ``/metrics`` are never authenticated.
"""
from __future__ import annotations

import asyncio
import bisect
import datetime as _dt
import gc
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import AuthError, PersonalizeError
from ..model import load_model
from ..personalize import DEFAULT_ACCOUNT, DEFAULT_REGION, Campaign, Client

__all__ = ["CampaignSpec", "CampaignRegistry", "Metrics", "SigV4Verifier", "create_app",
           "load_credentials", "serve", "serve_main", "DEFAULT_HOST", "DEFAULT_PORT"]

log = logging.getLogger("rankcore.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_RELOAD_INTERVAL = 2.0
_JSON = b"application/json"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --------------------------------------------------------------------------- campaigns
@dataclass
class CampaignSpec:
    """One served campaign: its name, model directory and filters ``[(name, expression)]``."""

    name: str
    path: str
    filters: list = field(default_factory=list)


def _manifest_stamp(path: str):
    try:
        st = os.stat(os.path.join(path, "manifest.json"))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _warm_up(campaign: Campaign) -> None:
    """Rank a few items once, so JIT compilation and page faults happen before serving."""
    model = campaign.model
    n = min(model.n_items, 8)
    if n:
        ids = [model.item_ids[i] for i in range(n)]
        campaign.rank("", ids)
        campaign.rank_batch([("", ids)])


class CampaignRegistry:
    """The served campaigns, swapped atomically when a model directory changes.

    Parameters
    ----------
    specs : sequence of CampaignSpec
    region, account : str
        Used in the campaign and filter ARNs.
    max_input_items : int or None
        The ``inputList`` limit enforced by the ``Client`` (500 by default).
    backend : str, optional
        Kernel backend of every ``Campaign``.
    loader : callable, optional
        ``loader(path) -> Model`` (default ``load_model(path, mmap=True)``).

    Attributes
    ----------
    client : rankcore.Client
        The current client; replaced (never mutated) on every reload. Read it once per request.
    """

    def __init__(self, specs: Sequence[CampaignSpec], *, region: str = DEFAULT_REGION,
                 account: str = DEFAULT_ACCOUNT, max_input_items: int | None = 500,
                 backend: str | None = None, loader: Callable | None = None):
        names = [s.name for s in specs]
        if not specs:
            raise ValueError("no campaign to serve (give --campaign NAME=DIR)")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate campaign names in {names}")
        self.specs = {s.name: s for s in specs}
        self.region = region
        self.account = account
        self.max_input_items = max_input_items
        self.backend = backend
        self._loader = loader or (lambda p: load_model(p, mmap=True))
        self._lock = threading.Lock()  # serialises reloads (readers never lock)
        self._stamps: dict = {}
        self.generations: dict = {}
        self.reloads: dict = {}
        self.reload_failures: dict = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload_all = False
        self._thread: threading.Thread | None = None
        campaigns = {}
        for spec in specs:
            self._stamps[spec.name] = _manifest_stamp(spec.path)
            campaigns[spec.name] = self._build(spec)
            self.generations[spec.name] = 1
            self.reloads[spec.name] = 0
            self.reload_failures[spec.name] = 0
        self.campaigns = campaigns
        self.client = Client(list(campaigns.values()), max_input_items=max_input_items)

    def _build(self, spec: CampaignSpec) -> Campaign:
        model = self._loader(spec.path)
        campaign = Campaign(model, name=spec.name, region=self.region, account=self.account,
                            backend=self.backend)
        if spec.filters:
            create = getattr(campaign, "create_filter", None)
            if create is None:
                raise ValueError("filters are not available in this rankcore build")
            for fname, expr in spec.filters:
                create(fname, expr)
        _warm_up(campaign)
        return campaign

    @property
    def campaign_arns(self) -> dict:
        return {name: c.arn for name, c in self.campaigns.items()}

    @property
    def filter_arns(self) -> dict:
        """Campaign name -> list of filter ARNs."""
        return {name: sorted(getattr(c, "filters", {}) or {}) for name, c in self.campaigns.items()}

    def reload(self, name: str) -> bool:
        """Load campaign ``name``'s model again and swap it in; False (old one kept) on failure."""
        spec = self.specs[name]
        with self._lock:
            stamp = _manifest_stamp(spec.path)
            try:
                campaign = self._build(spec)
            except Exception as exc:
                self.reload_failures[name] += 1
                self._stamps[name] = stamp  # do not retry the same broken model in a loop
                log.error("campaign %s: reloading %s failed, still serving the previous model: %s",
                          name, spec.path, exc)
                return False
            campaigns = dict(self.campaigns)
            campaigns[name] = campaign
            client = Client(list(campaigns.values()), max_input_items=self.max_input_items)
            self.campaigns = campaigns
            self.client = client  # the swap: one assignment
            self._stamps[name] = stamp
            self.generations[name] += 1
            self.reloads[name] += 1
        log.warning("campaign %s: reloaded the model in %s (generation %d)", name, spec.path,
                    self.generations[name])
        return True

    def check(self) -> list:
        """Reload every campaign whose manifest changed (or all after ``request_reload``)."""
        reload_all, self._reload_all = self._reload_all, False
        done = []
        for name, spec in self.specs.items():
            stamp = _manifest_stamp(spec.path)
            if reload_all or (stamp is not None and stamp != self._stamps.get(name)):
                if self.reload(name):
                    done.append(name)
        return done

    def request_reload(self) -> None:
        """Reload every campaign soon, in the watcher thread (safe from a signal handler)."""
        self._reload_all = True
        self._wake.set()

    def start_watcher(self, interval: float | None = DEFAULT_RELOAD_INTERVAL) -> None:
        """Start the background thread that checks the directories every ``interval`` seconds
        (``None``: only on ``request_reload``)."""
        if self._thread is not None:
            return

        def run():
            while not self._stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    if interval is not None or self._reload_all:
                        self.check()
                except Exception:  # pragma: no cover - keep watching whatever happens
                    log.exception("model watcher")

        self._thread = threading.Thread(target=run, name="rankcore-model-watcher", daemon=True)
        self._thread.start()

    def stop_watcher(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --------------------------------------------------------------------------- metrics
class Metrics:
    """Counters and a latency histogram, rendered in the Prometheus text format.

    Updated only from the event-loop thread (no locks on the request path).
    """

    BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self):
        self.requests: dict = {}   # (operation, status) -> count
        self.errors: dict = {}     # error type -> count
        self.buckets = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, operation: str, status: int, error: str | None, seconds: float | None) -> None:
        key = (operation, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
        if seconds is not None:
            self.buckets[bisect.bisect_left(self.BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, registry: CampaignRegistry | None = None) -> str:
        lines = ["# HELP rankcore_requests_total HTTP requests by operation and status.",
                 "# TYPE rankcore_requests_total counter"]
        for (op, status), n in sorted(self.requests.items()):
            lines.append(f'rankcore_requests_total{{operation="{op}",status="{status}"}} {n}')
        lines += ["# HELP rankcore_errors_total Error responses by x-amzn-ErrorType.",
                  "# TYPE rankcore_errors_total counter"]
        for name, n in sorted(self.errors.items()):
            lines.append(f'rankcore_errors_total{{type="{name}"}} {n}')
        lines += ["# HELP rankcore_request_duration_seconds GetPersonalizedRanking time in the server.",
                  "# TYPE rankcore_request_duration_seconds histogram"]
        cum = 0
        for le, n in zip(self.BUCKETS, self.buckets):
            cum += n
            lines.append(f'rankcore_request_duration_seconds_bucket{{le="{le}"}} {cum}')
        lines.append(f'rankcore_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"rankcore_request_duration_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"rankcore_request_duration_seconds_count {self.latency_count}")
        if registry is not None:
            lines += ["# HELP rankcore_model_reloads_total Successful model swaps per campaign.",
                      "# TYPE rankcore_model_reloads_total counter"]
            lines += [f'rankcore_model_reloads_total{{campaign="{n}"}} {v}'
                      for n, v in sorted(registry.reloads.items())]
            lines += ["# HELP rankcore_model_reload_failures_total Failed model reloads per campaign.",
                      "# TYPE rankcore_model_reload_failures_total counter"]
            lines += [f'rankcore_model_reload_failures_total{{campaign="{n}"}} {v}'
                      for n, v in sorted(registry.reload_failures.items())]
            lines += ["# HELP rankcore_model_generation Model generation served per campaign.",
                      "# TYPE rankcore_model_generation gauge"]
            lines += [f'rankcore_model_generation{{campaign="{n}"}} {v}'
                      for n, v in sorted(registry.generations.items())]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- SigV4
def load_credentials(path: str) -> dict:
    """Access key ID -> secret, from JSON ``{"AKID": "SECRET"}`` or an AWS credentials ini file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if data is not None:
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            raise ValueError(f"{path}: credentials JSON must map access key IDs to secret keys")
        creds = dict(data)
    else:
        import configparser
        cp = configparser.ConfigParser()
        try:
            cp.read_string(text)
        except configparser.Error as exc:
            raise ValueError(f"{path}: neither JSON nor an ini credentials file ({exc})") from None
        creds = {}
        for section in cp.sections():
            akid = cp.get(section, "aws_access_key_id", fallback=None)
            secret = cp.get(section, "aws_secret_access_key", fallback=None)
            if akid and secret:
                creds[akid.strip()] = secret.strip()
    if not creds:
        raise ValueError(f"{path}: no credentials found")
    return creds


class SigV4Verifier:
    """Verify AWS SigV4 ``Authorization`` headers by re-signing with botocore's ``SigV4Auth``."""

    MAX_SKEW = 300.0

    def __init__(self, credentials: Mapping[str, str], service: str = "personalize"):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        self.credentials = dict(credentials)
        self.service = service
        self._SigV4Auth, self._AWSRequest, self._Credentials = SigV4Auth, AWSRequest, Credentials

    def verify(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``AuthError`` unless the request is signed with a known key. ``headers`` lower-case."""
        auth = headers.get("authorization")
        if not auth:
            raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            algorithm, _, rest = auth.partition(" ")
            parts = dict(p.strip().split("=", 1) for p in rest.split(","))
            credential = parts["Credential"]
            signed_headers = parts["SignedHeaders"].split(";")
            signature = parts["Signature"]
            akid, date, region, service, terminal = credential.split("/")
        except (ValueError, KeyError):
            raise AuthError("IncompleteSignatureException",
                            "Authorization header requires Credential, SignedHeaders and Signature") from None
        if algorithm != "AWS4-HMAC-SHA256" or terminal != "aws4_request":
            raise AuthError("IncompleteSignatureException", f"Unsupported signature algorithm {algorithm}")
        secret = self.credentials.get(akid)
        if secret is None:
            raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        try:
            when = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise AuthError("IncompleteSignatureException", "X-Amz-Date header is missing or malformed") from None
        if service != self.service or date != amz_date[:8]:
            raise AuthError("InvalidSignatureException",
                            f"Credential should be scoped to a valid region and to service '{self.service}'.")
        if abs(time.time() - when.timestamp()) > self.MAX_SKEW:
            raise AuthError("InvalidSignatureException",
                            f"Signature expired: {amz_date} is more than 5 minutes from the server time.")
        signed = {}
        for name in signed_headers:
            if name not in headers:
                raise AuthError("InvalidSignatureException", f"Signed header {name!r} is missing")
            signed[name] = headers[name]
        host = headers.get("host", "localhost")
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        req = self._AWSRequest(method=method, url=url, data=body, headers=signed)
        req.context["timestamp"] = amz_date
        token = headers.get("x-amz-security-token")
        signer = self._SigV4Auth(self._Credentials(akid, secret, token), self.service, region)
        expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
        payload_hash = headers.get("x-amz-content-sha256")
        if payload_hash and payload_hash != "UNSIGNED-PAYLOAD":
            import hashlib
            if not hmac.compare_digest(payload_hash, hashlib.sha256(body).hexdigest()):
                raise AuthError("InvalidSignatureException", "The provided payload hash does not match the body.")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise AuthError("InvalidSignatureException",
                            "The request signature we calculated does not match the signature you "
                            "provided. Check your AWS Secret Access Key and signing method. Consult "
                            "the service documentation for details.")


# --------------------------------------------------------------------------- responses
def _headers(request_id: str, error: str | None = None, content_type: bytes = _JSON,
             length: int = 0) -> list:
    h = [(b"content-type", content_type), (b"x-amzn-requestid", request_id.encode()),
         (b"content-length", str(length).encode())]
    if error is not None:
        h.append((b"x-amzn-errortype", error.encode()))
    return h


def _error_body(name: str, message: str) -> bytes:
    return orjson.dumps({"__type": name, "message": message})


def error_response(status: int, name: str, message: str) -> Response:
    """A Starlette response in the AWS rest-json error shape."""
    rid = str(uuid.uuid4())
    return Response(_error_body(name, message), status_code=status, media_type="application/json",
                    headers={"x-amzn-RequestId": rid, "x-amzn-ErrorType": name})


async def _read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


class _Operation:
    """A raw ASGI endpoint for one POST operation: read body, verify, call, answer."""

    def __init__(self, name: str, handler: Callable, metrics: Metrics, verifier: SigV4Verifier | None,
                 timed: bool = False):
        self.name = name
        self.handler = handler
        self.metrics = metrics
        self.verifier = verifier
        self.timed = timed

    async def __call__(self, scope, receive, send) -> None:
        t0 = time.perf_counter()
        body = await _read_body(receive)
        error = None
        try:
            if self.verifier is not None:
                self._verify(scope, body)
            try:
                params = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise _InvalidInput(f"Request body is not valid JSON: {exc}") from None
            status, payload, rid = 200, *self.handler(params)
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
        await send({"type": "http.response.start", "status": status,
                    "headers": _headers(rid, error, length=len(payload))})
        await send({"type": "http.response.body", "body": payload})
        self.metrics.observe(self.name, status, error, time.perf_counter() - t0 if self.timed else None)

    def _verify(self, scope, body: bytes) -> None:
        headers: dict = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            value = " ".join(v.decode("latin-1").split())
            headers[name] = headers[name] + "," + value if name in headers else value
        raw_path = scope.get("raw_path") or scope["path"].encode()
        self.verifier.verify(scope["method"], raw_path.decode("latin-1"),
                             scope.get("query_string", b"").decode("latin-1"), headers, body)


class _InvalidInput(PersonalizeError):
    code = "InvalidInputException"
    http_status = 400


class _App(Starlette):
    """Starlette, except that ``POST /personalize-ranking`` goes straight to its endpoint.

    The endpoint is a raw ASGI callable that answers every outcome itself (errors included), so
    the middleware stack and router would only add per-request cost on the hot route; every other
    request takes Starlette's usual path.
    """

    hot_path: Callable | None = None

    async def __call__(self, scope, receive, send) -> None:
        if (self.hot_path is not None and scope["type"] == "http"
                and scope["path"] == "/personalize-ranking" and scope["method"] == "POST"):
            await self.hot_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(registry: CampaignRegistry, *, verifier: SigV4Verifier | None = None,
               metrics: Metrics | None = None) -> Starlette:
    """The Starlette application serving ``registry`` (routes in the module docstring)."""
    metrics = metrics if metrics is not None else Metrics()

    def get_personalized_ranking(params):
        client = registry.client  # read once: the whole request sees one model
        if not isinstance(params, dict):
            raise _InvalidInput("Request body must be a JSON object")
        return client.get_personalized_ranking_json(params)  # (body bytes, request ID)

    def get_recommendations(params):
        raise _InvalidInput("GetRecommendations is not available on this server (catalog-wide "
                            "recommendations are not implemented); use GetPersonalizedRanking")

    async def ping(request: Request) -> Response:
        body = orjson.dumps({"status": "ok", "campaigns": sorted(registry.campaign_arns.values())})
        return Response(body, media_type="application/json",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(registry), media_type="text/plain; version=0.0.4",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def http_error(request: Request, exc: HTTPException) -> Response:
        metrics.observe("Unknown", exc.status_code, "UnknownOperationException", None)
        return error_response(exc.status_code, "UnknownOperationException",
                              f"{request.method} {request.url.path} is not an operation of this service")

    async def server_error(request: Request, exc: Exception) -> Response:
        metrics.observe("Unknown", 500, "ServiceException", None)
        return error_response(500, "ServiceException", "Internal error")

    ranking = _Operation("GetPersonalizedRanking", get_personalized_ranking, metrics, verifier, timed=True)
    routes = [
        Route("/personalize-ranking", ranking, methods=["POST"]),
        Route("/recommendations", _Operation("GetRecommendations", get_recommendations, metrics,
                                             verifier), methods=["POST"]),
        Route("/ping", ping, methods=["GET", "HEAD"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    app = _App(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.hot_path = ranking
    app.state.registry = registry
    app.state.metrics = metrics
    return app


# --------------------------------------------------------------------------- configuration
def parse_campaign(text: str) -> tuple:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--campaign must look like NAME=DIR, got {text!r}")
    return name, path


def parse_filter(text: str) -> tuple:
    """``NAME=EXPR`` or ``CAMPAIGN:NAME=EXPR`` -> ``(campaign or None, name, expression)``."""
    head, sep, expr = text.partition("=")
    if not sep or not head or not expr.strip():
        raise ValueError(f"--filter must look like NAME=EXPRESSION or CAMPAIGN:NAME=EXPRESSION, got {text!r}")
    campaign, colon, name = head.rpartition(":")
    return (campaign if colon else None), name.strip(), expr.strip()


_SETTINGS = {"host": DEFAULT_HOST, "port": DEFAULT_PORT, "workers": 1, "region": DEFAULT_REGION,
             "account": DEFAULT_ACCOUNT, "max_input_items": 500, "auth": "none", "credentials": None,
             "reload_interval": DEFAULT_RELOAD_INTERVAL, "no_reload": False, "backend": None,
             "log_level": "warning"}


def settings_from_args(args) -> dict:
    """Merge ``--config FILE`` with the command-line flags (flags win) into a plain dict."""
    conf: dict = {}
    if getattr(args, "config", None):
        with open(args.config, encoding="utf-8") as f:
            try:
                conf = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{args.config}: not valid JSON ({exc})") from None
        if not isinstance(conf, dict):
            raise ValueError(f"{args.config}: must hold a JSON object")
        unknown = set(conf) - set(_SETTINGS) - {"campaigns", "filters"}
        if unknown:
            raise ValueError(f"{args.config}: unknown settings {sorted(unknown)}")
    s = {k: conf.get(k, v) for k, v in _SETTINGS.items()}
    for k in _SETTINGS:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    campaigns = dict(conf.get("campaigns") or {})
    for text in getattr(args, "campaign", None) or []:
        name, path = parse_campaign(text)
        campaigns[name] = path
    filters = []
    conf_filters = conf.get("filters") or {}
    if isinstance(conf_filters, dict):
        conf_filters = [f"{k}={v}" for k, v in conf_filters.items()]
    for text in list(conf_filters) + list(getattr(args, "filter", None) or []):
        filters.append(parse_filter(text))
    for camp, _, _ in filters:
        if camp is not None and camp not in campaigns:
            raise ValueError(f"filter for unknown campaign {camp!r}")
    s["campaigns"] = campaigns
    s["filters"] = filters
    return s


def registry_from_settings(s: dict) -> CampaignRegistry:
    specs = []
    for name, path in s["campaigns"].items():
        fl = [(n, e) for c, n, e in s["filters"] if c is None or c == name]
        specs.append(CampaignSpec(name, os.fspath(path), fl))
    return CampaignRegistry(specs, region=s["region"], account=s["account"],
                            max_input_items=s["max_input_items"], backend=s["backend"])


def app_from_settings(s: dict) -> Starlette:
    registry = registry_from_settings(s)
    verifier = SigV4Verifier(load_credentials(s["credentials"])) if s["auth"] == "sigv4" else None
    if not s["no_reload"] or s.get("_sighup"):
        registry.start_watcher(None if s["no_reload"] else s["reload_interval"])
    app = create_app(registry, verifier=verifier)
    gc.collect()
    gc.freeze()  # start-up objects never need scanning again: cheaper collections per request
    return app


def app_from_environment() -> Starlette:
    """uvicorn factory for ``--workers N``: settings come in ``RANKCORE_SERVE_SETTINGS`` (JSON)."""
    s = json.loads(os.environ["RANKCORE_SERVE_SETTINGS"])
    s["filters"] = [tuple(f) for f in s["filters"]]
    _configure_logging(s["log_level"])
    return app_from_settings(s)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log.setLevel(level.upper())


def resolve_workers(value) -> int:
    """``workers`` setting -> process count: a positive int, or ``"auto"`` for one per CPU.

    The default stays 1: one process keeps ``/metrics`` whole (each worker counts only its own
    requests) and handles SIGHUP itself. ``auto`` is for a multi-core machine where the server
    has the cores to itself; ranking is CPU-bound, so more workers than CPUs gains nothing.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        return max(1, n)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', got {value!r}")
    return value


def serve(s: dict) -> int:
    """Run the server until SIGINT/SIGTERM. ``s`` comes from ``settings_from_args``."""
    import uvicorn

    _configure_logging(s["log_level"])
    s = dict(s, workers=resolve_workers(s["workers"]))
    if s["auth"] == "sigv4" and not s["credentials"]:
        raise ValueError("--auth sigv4 needs --credentials FILE")
    if s["auth"] == "none" and s["host"] not in _LOOPBACK:
        print(f"warning: serving on {s['host']} without authentication: anyone who can reach this "
              "address can query the models (use --auth sigv4 --credentials FILE)", file=sys.stderr)
    common = dict(host=s["host"], port=s["port"], loop="uvloop", http="httptools", access_log=False,
                  log_level=s["log_level"], lifespan="off", server_header=False,
                  proxy_headers=False)  # nothing reads the client address or scheme
    if s["workers"] > 1:
        # each worker builds its own registry (and watcher) from the settings
        registry = registry_from_settings(s)  # fail fast, and print the ARNs, in the parent
        _print_startup(s, registry)
        del registry
        os.environ["RANKCORE_SERVE_SETTINGS"] = json.dumps(s)
        uvicorn.run("rankcore.server:app_from_environment", factory=True, workers=s["workers"], **common)
        return 0
    app = app_from_settings(dict(s, _sighup=True))
    registry = app.state.registry
    _print_startup(s, registry)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: registry.request_reload())
    try:
        uvicorn.Server(uvicorn.Config(app, **common)).run()
    finally:
        registry.stop_watcher()
    return 0


def _print_startup(s: dict, registry: CampaignRegistry) -> None:
    for name, arn in registry.campaign_arns.items():
        print(f"campaign {arn}  ({registry.specs[name].path})")
        for farn in registry.filter_arns.get(name, []):
            print(f"  filter {farn}")
    auth = "SigV4" if s["auth"] == "sigv4" else "none"
    reload = "off" if s["no_reload"] else f"every {s['reload_interval']:g} s"
    print(f"rankcore serving on http://{s['host']}:{s['port']} (workers {s['workers']}, "
          f"auth {auth}, reload {reload}, SIGHUP reloads)", flush=True)


def serve_main(args) -> int:
    """``rankcore serve``: build the settings from ``args`` and run."""
    s = settings_from_args(args)
    if not s["campaigns"]:
        raise ValueError("no campaign to serve (give --campaign NAME=DIR or a --config file)")
    return serve(s)
