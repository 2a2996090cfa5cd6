"""The HTTP server against real clients: ``rankcore serve`` as a subprocess on 127.0.0.1.

boto3 (``personalize-runtime`` with ``endpoint_url``) and the AWS CLI (``python -m awscli``) call
it exactly as they would call Amazon Personalize (docs/personalize.md). Answers
are compared with the in-process ``rankcore.Client`` on the same model directory: the server must
return the same ranking and scores (byte-for-byte after JSON), with a fresh recommendationId.

The hot-swap test replaces the served model directory under a bounded concurrent load and checks
that no request fails and that every response is exactly model A's or model B's answer.

Out of scope here: SigV4 details beyond accept/reject (botocore's own signer does the maths), and
throughput (benches/load_server.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import rankcore
from rankcore import Campaign, Client
from rankcore.datasets import synthetic
from rankcore.model import load_model

SRC = str(Path(rankcore.__file__).resolve().parent.parent)
REGION, ACCOUNT = "us-east-1", "000000000000"
ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo"
FILTER_ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/genre"
FILTER_EXPR = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"
SIZES = dict(n_users=200, n_items=2000, dim=32)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_server(*args: str, timeout: float = 60.0):
    """Start ``python -m rankcore serve ARGS --port P`` and yield its base URL; stop it after."""
    port = _free_port()
    cmd = [sys.executable, "-m", "rankcore", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise RuntimeError(f"server exited with {proc.returncode}:\n{out}\n{err}")
            try:
                if httpx.get(url + "/ping", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        proc.url = url
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "demo"
    synthetic(**SIZES, seed=0).save(path)
    return path


@pytest.fixture(scope="module")
def server(model_dir):
    with run_server("--campaign", f"demo={model_dir}", "--filter", f"genre={FILTER_EXPR}") as proc:
        yield proc


@pytest.fixture(scope="module")
def local(model_dir):
    """The in-process reference: a Client over the same model directory."""
    campaign = Campaign(load_model(model_dir), name="demo")
    campaign.create_filter("genre", FILTER_EXPR)
    return Client([campaign])


@pytest.fixture(scope="module")
def boto(server):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    return boto3.client("personalize-runtime", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}))


def _ranking(response: dict) -> list:
    return response["personalizedRanking"]


SEED_REQUESTS = {
    "plain": dict(userId="12", inputList=["3", "4", "10", "8", "12", "7"]),
    "context": dict(userId="12", inputList=["3", "4", "10", "8", "12", "7"],
                    context={"DEVICE": "desktop"}),
    "metadata": dict(userId="12", inputList=["3", "4", "10", "8", "12", "7", "nope"],
                     metadataColumns={"ITEMS": ["GENRE", "PRICE"]}),
    "unknown-user-and-items": dict(userId="no-such-user", inputList=["5", "x", "6", "5", "y"]),
}


@pytest.mark.parametrize("name", sorted(SEED_REQUESTS))
def test_boto3_seed_examples(boto, local, name):
    req = dict(SEED_REQUESTS[name], campaignArn=ARN)
    got = boto.get_personalized_ranking(**req)
    want = local.get_personalized_ranking(**req)
    assert _ranking(got) == _ranking(want)
    assert got["recommendationId"].startswith("RID-")
    meta = got["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RequestId"]
    assert meta["HTTPHeaders"]["content-type"] == "application/json"


def test_boto3_filter_with_values(boto, local):
    req = dict(campaignArn=ARN, userId="12", inputList=[str(i) for i in range(40)],
               filterArn=FILTER_ARN, filterValues={"GENRE": '"Comedy","Drama"'})
    got = boto.get_personalized_ranking(**req)
    assert _ranking(got) == _ranking(local.get_personalized_ranking(**req))
    assert 0 < len(_ranking(got)) < 40


def test_boto3_unknown_campaign(boto):
    with pytest.raises(boto.exceptions.ResourceNotFoundException, match="campaign/nope"):
        boto.get_personalized_ranking(campaignArn=ARN.replace("demo", "nope"), userId="1",
                                      inputList=["1"])


def test_boto3_over_limit(boto):
    with pytest.raises(boto.exceptions.InvalidInputException, match="less than or equal to 500"):
        boto.get_personalized_ranking(campaignArn=ARN, userId="1",
                                      inputList=[str(i) for i in range(501)])
    with pytest.raises(boto.exceptions.InvalidInputException, match="less than or equal to 50"):
        boto.get_personalized_ranking(campaignArn=ARN, userId="1", inputList=[str(i) for i in range(51)],
                                      metadataColumns={"ITEMS": ["GENRE"]})


def test_boto3_500_items_ok(boto, local):
    req = dict(campaignArn=ARN, userId="3", inputList=[str(i) for i in range(500)])
    assert _ranking(boto.get_personalized_ranking(**req)) == _ranking(local.get_personalized_ranking(**req))


def test_boto3_unknown_context_field(boto):
    with pytest.raises(boto.exceptions.InvalidInputException, match="context"):
        boto.get_personalized_ranking(campaignArn=ARN, userId="1", inputList=["1"],
                                      context={"WEATHER": "rain"})


def _aws_cli(url: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    cfg = tmp_path / "aws-config"
    cfg.write_text("")
    env = _env()
    env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(cfg), AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_PROFILE", None)
    cmd = [sys.executable, "-m", "awscli", "personalize-runtime", "get-personalized-ranking",
           "--endpoint-url", url, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli(server, local, tmp_path):
    pytest.importorskip("awscli")
    base = ["--campaign-arn", ARN, "--user-id", "12", "--input-list", "3", "4", "10", "8", "12", "7"]
    r = _aws_cli(server.url, *base, "--context", "DEVICE=desktop", "--metadata-columns", "ITEMS=GENRE",
                 tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = local.get_personalized_ranking(campaignArn=ARN, userId="12",
                                          inputList=["3", "4", "10", "8", "12", "7"],
                                          context={"DEVICE": "desktop"},
                                          metadataColumns={"ITEMS": ["GENRE"]})
    assert _ranking(got) == _ranking(want)
    r = _aws_cli(server.url, *base, "--filter-arn", FILTER_ARN, "--filter-values",
                 '{"GENRE": "\\"Comedy\\""}', tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr

    r = _aws_cli(server.url, "--campaign-arn", ARN.replace("demo", "nope"), "--user-id", "1",
                 "--input-list", "1", tmp_path=tmp_path)
    assert r.returncode == 255
    assert "An error occurred (ResourceNotFoundException) when calling the GetPersonalizedRanking" in r.stderr


# --------------------------------------------------------------------------- raw HTTP
BAD_BODIES = [
    b"", b"{", b"null", b"[]", b'"x"', b"1", b"\xff\xfe",
    b'{"campaignArn": 1, "userId": "1", "inputList": ["1"]}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": 5, "inputList": ["1"]}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": "1"}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": [1, 2]}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": [null]}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "context": []}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "context": {"DEVICE": 1}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "context": {"a b": "x"}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "metadataColumns": {"ITEMS": "GENRE"}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "metadataColumns": {"USERS": ["AGE"]}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "metadataColumns": {"ITEMS": ["NOPE"]}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "filterValues": {"A": 1}}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "1", "inputList": ["1"], "extra": 1}',
    b'{"campaignArn": "not-an-arn", "userId": "1", "inputList": ["1"]}',
    b'{"campaignArn": "' + ARN.encode() + b'", "userId": "' + b"u" * 257 + b'", "inputList": ["1"]}',
    b'{"userId": "1", "inputList": ["1"]}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_input_is_400(server, body):
    r = httpx.post(server.url + "/personalize-ranking", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-ErrorType"] == "InvalidInputException"
    assert r.json()["__type"] == "InvalidInputException" and r.json()["message"]
    assert r.headers["x-amzn-RequestId"]
    assert r.headers["content-type"] == "application/json"


def test_unknown_filter_is_404(server):
    body = {"campaignArn": ARN, "userId": "1", "inputList": ["1"],
            "filterArn": FILTER_ARN.replace("genre", "nope")}
    r = httpx.post(server.url + "/personalize-ranking", json=body)
    assert r.status_code == 404 and r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"


def test_other_routes(server):
    r = httpx.post(server.url + "/recommendations", json={"campaignArn": ARN})  # no userId/itemId
    assert r.status_code == 400 and r.json()["__type"] == "InvalidInputException"
    for method, path in (("GET", "/nothing"), ("POST", "/"), ("GET", "/personalize-ranking")):
        r = httpx.request(method, server.url + path)
        assert r.status_code in (404, 405)
        assert r.json()["__type"] == "UnknownOperationException"
        assert r.headers["x-amzn-RequestId"]
    r = httpx.get(server.url + "/ping")
    assert r.status_code == 200 and r.json()["campaigns"] == [ARN] and r.headers["x-amzn-RequestId"]
    httpx.post(server.url + "/personalize-ranking", json={"campaignArn": ARN, "userId": "1", "inputList": ["1"]})
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["x-amzn-RequestId"]
    text = r.text
    assert 'rankcore_requests_total{operation="GetPersonalizedRanking",status="200"}' in text
    assert "rankcore_request_duration_seconds_bucket" in text
    assert 'rankcore_model_generation{campaign="demo"} 1' in text


# --------------------------------------------------------------------------- SigV4
def test_sigv4(model_dir, tmp_path):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import ClientError

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"AKIDRIGHT": "right-secret"}))
    with run_server("--campaign", f"demo={model_dir}", "--auth", "sigv4", "--credentials", str(creds),
                    "--no-reload") as proc:
        def client(akid, secret):
            return boto3.client("personalize-runtime", endpoint_url=proc.url, region_name=REGION,
                                aws_access_key_id=akid, aws_secret_access_key=secret,
                                config=Config(retries={"max_attempts": 1}))

        req = dict(campaignArn=ARN, userId="12", inputList=["3", "4", "10"])
        assert len(_ranking(client("AKIDRIGHT", "right-secret").get_personalized_ranking(**req))) == 3
        with pytest.raises(ClientError) as e:
            client("AKIDRIGHT", "wrong-secret").get_personalized_ranking(**req)
        assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as e:
            client("AKIDOTHER", "right-secret").get_personalized_ranking(**req)
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
        r = httpx.post(proc.url + "/personalize-ranking", json=req)
        assert r.status_code == 403 and r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        assert httpx.get(proc.url + "/ping").status_code == 200


# --------------------------------------------------------------------------- hot swap
def test_hot_swap_under_load(tmp_path):
    """Replace the model directory while 4 clients send requests: zero failures, every answer is
    exactly model A's or model B's, and B's answers appear once the swap is done."""
    root = tmp_path / "models"
    root.mkdir()
    live = root / "live"
    model_a, model_b = synthetic(**SIZES, seed=1), synthetic(**SIZES, seed=2)
    model_a.save(live)
    requests = [dict(campaignArn=ARN, userId=str(u), inputList=[str(i) for i in range(u, 2000, 37)])
                for u in range(8)]
    want = {}
    for tag, model in (("A", model_a), ("B", model_b)):
        client = Client([Campaign(model, name="demo")])
        want[tag] = [json.dumps(_ranking(client.get_personalized_ranking(**r))) for r in requests]
    assert all(a != b for a, b in zip(want["A"], want["B"]))

    with run_server("--campaign", f"demo={live}", "--reload-interval", "0.1") as proc:
        url = proc.url + "/personalize-ranking"
        swapped = threading.Event()
        seen = {"A": 0, "B": 0}
        failures = []
        lock = threading.Lock()

        def one(http, k):
            r = http.post(url, json=requests[k % len(requests)])
            if r.status_code != 200:
                failures.append((r.status_code, r.text))
                return
            got = json.dumps(_ranking(r.json()))
            tag = "A" if got == want["A"][k % len(requests)] else "B" if got == want["B"][k % len(requests)] else None
            with lock:
                if tag is None:
                    failures.append(("mixed", got[:200]))
                else:
                    seen[tag] += 1

        def worker(w):
            with httpx.Client(timeout=30) as http:
                k = w
                for _ in range(40):          # before the swap
                    one(http, k); k += 1
                warmed.wait()
                deadline = time.monotonic() + 30
                while not swapped.is_set() and time.monotonic() < deadline:  # during
                    one(http, k); k += 1
                for _ in range(40):          # after
                    one(http, k); k += 1

        warmed = threading.Barrier(5)
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        warmed.wait(timeout=60)  # every client has its 40 answers from A and keeps sending
        staging = root / "staging"
        model_b.save(staging)
        os.rename(live, root / "old")       # new directory renamed into place
        os.rename(staging, live)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if 'rankcore_model_generation{campaign="demo"} 2' in httpx.get(proc.url + "/metrics").text:
                break
            time.sleep(0.05)
        swapped.set()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures[:5]
        assert seen["A"] >= 160 and seen["B"] >= 160, seen

        # SIGHUP reloads too (the same model B, generation 3); a broken model keeps B serving
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while 'rankcore_model_generation{campaign="demo"} 3' not in httpx.get(proc.url + "/metrics").text:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        (live / "manifest.json").write_text('{"format": "rankcore-model", "version": 99}')
        deadline = time.monotonic() + 30
        while 'rankcore_model_reload_failures_total{campaign="demo"} 1' not in httpx.get(proc.url + "/metrics").text:
            assert time.monotonic() < deadline, "the broken model was not noticed"
            time.sleep(0.05)
        r = httpx.post(url, json=requests[0])
        assert r.status_code == 200 and json.dumps(_ranking(r.json())) == want["B"][0]


# --------------------------------------------------------------------------- in-process pieces
def test_raised_item_limit_and_failed_reload_in_process(model_dir, tmp_path):
    import asyncio

    from rankcore.serve import CampaignRegistry, CampaignSpec, create_app

    live = tmp_path / "live"
    synthetic(**SIZES, seed=0).save(live)
    registry = CampaignRegistry([CampaignSpec("demo", str(live))], max_input_items=1000)
    app = create_app(registry)

    async def post(body):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.post("/personalize-ranking", json=body)

    body = {"campaignArn": ARN, "userId": "1", "inputList": [str(i) for i in range(800)]}
    r = asyncio.run(post(body))
    assert r.status_code == 200 and len(r.json()["personalizedRanking"]) == 800
    body["inputList"] = [str(i) for i in range(1001)]
    assert asyncio.run(post(body)).status_code == 400

    old = registry.client
    assert registry.check() == []                     # nothing changed
    (live / "manifest.json").write_text("{}")         # a broken model: the old one keeps serving
    assert registry.check() == [] and registry.reload_failures["demo"] == 1
    assert registry.client is old
    synthetic(**SIZES, seed=3).save(live)             # a good one is swapped in
    assert registry.check() == ["demo"] and registry.client is not old
    assert registry.generations["demo"] == 2


def test_credentials_file_formats(tmp_path):
    from rankcore.serve import load_credentials

    ini = tmp_path / "credentials"
    ini.write_text("[default]\naws_access_key_id = AKID1\naws_secret_access_key = s1\n"
                   "[other]\naws_access_key_id=AKID2\naws_secret_access_key=s2\n")
    assert load_credentials(str(ini)) == {"AKID1": "s1", "AKID2": "s2"}
    js = tmp_path / "creds.json"
    js.write_text('{"AKID3": "s3"}')
    assert load_credentials(str(js)) == {"AKID3": "s3"}
    js.write_text("[]")
    with pytest.raises(ValueError):
        load_credentials(str(js))


def test_get_personalized_ranking_json(local):
    """``Client.get_personalized_ranking_json`` (the server's path): the body of the dict path
    without ``ResponseMetadata``, a fresh request ID, and the same errors."""
    import orjson

    lists = [[str(i) for i in range(0, 2000, 4)][:499] + ["zz"],
             ["3", 'q"uote', "4", "back\\slash", "tab\t", "é-ü", "日本", "3"]]
    for ids in lists:
        params = {"campaignArn": ARN, "userId": "12", "inputList": ids}
        body, rid = local.get_personalized_ranking_json(params)
        expected = local.get_personalized_ranking(**params)
        got = orjson.loads(body)
        assert list(got) == ["personalizedRanking", "recommendationId"]
        assert got["personalizedRanking"] == expected["personalizedRanking"]
        assert got["recommendationId"].startswith("RID-") and len(rid) == 36
        assert got["recommendationId"] != expected["recommendationId"]
    for bad, exc in ((dict(params, campaignArn=ARN + "x"), local.exceptions.ResourceNotFoundException),
                     (dict(params, inputList=["1"] * 501), local.exceptions.InvalidInputException),
                     (dict(params, extra=1), local.exceptions.InvalidInputException)):
        with pytest.raises(exc) as e1:
            local.get_personalized_ranking_json(bad)
        with pytest.raises(exc) as e2:
            local.get_personalized_ranking(**bad)
        assert str(e1.value) == str(e2.value)


def test_workers_setting():
    import argparse

    from rankcore.cli import configure_serve_parser
    from rankcore.serve import resolve_workers, settings_from_args

    parser = argparse.ArgumentParser()
    configure_serve_parser(parser)
    assert settings_from_args(parser.parse_args(["--campaign", "a=b"]))["workers"] == 1
    assert settings_from_args(parser.parse_args(["--workers", "AUTO"]))["workers"] == "auto"
    assert settings_from_args(parser.parse_args(["--workers", "3"]))["workers"] == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "0"])
    n = resolve_workers("auto")
    assert isinstance(n, int) and 1 <= n <= (os.cpu_count() or 1)
    assert resolve_workers(2) == 2
    for bad in (0, "two", 1.5, True):
        with pytest.raises(ValueError):
            resolve_workers(bad)


def test_worker_factory_import_string():
    """``--workers N`` hands uvicorn an import string; it must name the factory."""
    from uvicorn.importer import import_from_string

    from rankcore.serve import app_from_environment
    from rankcore.serve.main import WORKER_FACTORY

    assert import_from_string(WORKER_FACTORY) is app_from_environment


@pytest.mark.slow
def test_two_workers(model_dir, local):
    """``--workers 2``: the workers start from the factory and answer like the in-process client."""
    req = dict(campaignArn=ARN, userId="12", inputList=[str(i) for i in range(40)],
               filterArn=FILTER_ARN, filterValues={"GENRE": '"Comedy","Drama"'})
    with run_server("--campaign", f"demo={model_dir}", "--filter", f"genre={FILTER_EXPR}",
                    "--workers", "2", "--no-reload") as proc:
        for _ in range(4):
            r = httpx.post(proc.url + "/personalize-ranking", json=req)
            assert r.status_code == 200, r.text
            assert _ranking(r.json()) == _ranking(local.get_personalized_ranking(**req))
