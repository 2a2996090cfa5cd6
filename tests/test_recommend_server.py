"""GetRecommendations over the wire and on the command line: ``rankcore serve`` called by unmodified
boto3 and the AWS CLI (answers compared with the in-process ``Client`` on the same model
directory), and ``rankcore recommend``.
"""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from rankcore import Campaign, Client
from rankcore.cli import main as cli_main
from rankcore.datasets import synthetic
from rankcore.model import load_model

from test_server import _env, run_server

REGION, ACCOUNT = "us-east-1", "000000000000"
ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo"
FILTER_ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/genre"
FILTER_EXPR = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "demo"
    synthetic(n_users=100, n_items=1500, dim=16, seed=1).save(path)
    return path


@pytest.fixture(scope="module")
def server(model_dir):
    with run_server("--campaign", f"demo={model_dir}", "--filter", f"genre={FILTER_EXPR}") as proc:
        yield proc


@pytest.fixture(scope="module")
def local(model_dir):
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


REQUESTS = {
    "user": dict(userId="12"),
    "user-25-default-and-context": dict(userId="12", context={"DEVICE": "desktop"}),
    "unknown-user": dict(userId="nobody", numResults=7),
    "related": dict(itemId="5", numResults=10),
    "related-with-user-filter": dict(itemId="5", userId="3", numResults=10, filterArn=FILTER_ARN,
                                     filterValues={"GENRE": '"Comedy"'}),
    "metadata": dict(userId="4", numResults=50, metadataColumns={"ITEMS": ["GENRE", "PRICE"]}),
    "filter": dict(userId="4", numResults=500, filterArn=FILTER_ARN,
                   filterValues={"GENRE": '"Drama","Horror"'}),
}


def _items(response: dict) -> list:
    return [{k: v for k, v in e.items() if k != "promotionName"} for e in response["itemList"]]


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_boto3_matches_client(boto, local, name):
    req = dict(REQUESTS[name], campaignArn=ARN)
    got = boto.get_recommendations(**req)
    want = local.get_recommendations(**req)
    assert got["itemList"] == want["itemList"]
    assert got["recommendationId"].startswith("RID-")
    assert got["recommendationId"] != want["recommendationId"]
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert 0 < len(got["itemList"]) <= req.get("numResults", 25)


def test_boto3_promotion(boto, local):
    promo = {"name": "comedy", "percentPromotedItems": 30, "filterArn": FILTER_ARN,
             "filterValues": {"GENRE": '"Comedy"'}}
    got = boto.get_recommendations(campaignArn=ARN, userId="8", numResults=10, promotions=[promo])
    items = got["itemList"]
    assert len(items) == 10 and len({e["itemId"] for e in items}) == 10
    promoted = [e for e in items if e.get("promotionName") == "comedy"]
    assert len(promoted) == 3
    want = local.get_recommendations(campaignArn=ARN, userId="8", numResults=10, promotions=[promo])
    assert [e["itemId"] for e in promoted] == [e["itemId"] for e in want["itemList"]
                                               if e.get("promotionName")]
    assert sorted(map(str, _items(got))) == sorted(map(str, _items(want)))  # same items, same scores


def test_boto3_errors(boto):
    with pytest.raises(boto.exceptions.ResourceNotFoundException, match="campaign/nope"):
        boto.get_recommendations(campaignArn=ARN.replace("demo", "nope"), userId="1")
    with pytest.raises(boto.exceptions.InvalidInputException, match="less than or equal to 500"):
        boto.get_recommendations(campaignArn=ARN, userId="1", numResults=501)
    with pytest.raises(boto.exceptions.InvalidInputException, match="less than or equal to 50"):
        boto.get_recommendations(campaignArn=ARN, userId="1", numResults=51,
                                 metadataColumns={"ITEMS": ["GENRE"]})
    with pytest.raises(boto.exceptions.InvalidInputException, match="not in the model"):
        boto.get_recommendations(campaignArn=ARN, itemId="no-such-item")
    with pytest.raises(boto.exceptions.InvalidInputException, match="recommenderArn"):
        boto.get_recommendations(recommenderArn=ARN.replace("campaign", "recommender"), userId="1")
    with pytest.raises(boto.exceptions.InvalidInputException, match="userId"):
        boto.get_recommendations(campaignArn=ARN)


def test_raw_http(server):
    r = httpx.post(server.url + "/recommendations", content=b"{")
    assert r.status_code == 400 and r.json()["__type"] == "InvalidInputException"
    r = httpx.post(server.url + "/recommendations", content=b"x" * (2 << 20))
    assert r.status_code == 413
    r = httpx.post(server.url + "/recommendations", json={"campaignArn": ARN, "userId": "1"})
    assert r.status_code == 200 and r.headers["x-amzn-RequestId"] and len(r.json()["itemList"]) == 25
    text = httpx.get(server.url + "/metrics").text
    assert 'rankcore_requests_total{operation="GetRecommendations",status="200"}' in text


def _aws_cli(url: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    cfg = tmp_path / "aws-config"
    cfg.write_text("")
    env = _env()
    env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(cfg), AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_PROFILE", None)
    cmd = [sys.executable, "-m", "awscli", "personalize-runtime", "get-recommendations",
           "--endpoint-url", url, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli(server, local, tmp_path):
    pytest.importorskip("awscli")
    r = _aws_cli(server.url, "--campaign-arn", ARN, "--user-id", "12", "--num-results", "5",
                 "--context", "DEVICE=desktop", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    want = local.get_recommendations(campaignArn=ARN, userId="12", numResults=5,
                                     context={"DEVICE": "desktop"})
    assert json.loads(r.stdout)["itemList"] == want["itemList"]
    r = _aws_cli(server.url, "--campaign-arn", ARN, "--item-id", "3", "--num-results", "4",
                 "--filter-arn", FILTER_ARN, "--filter-values", '{"GENRE": "\\"Comedy\\""}',
                 "--promotions", json.dumps([{"name": "p", "percentPromotedItems": 50,
                                              "filterArn": FILTER_ARN,
                                              "filterValues": {"GENRE": '"Drama"'}}]),
                 tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)["itemList"]
    assert len(items) == 4 and sum(e.get("promotionName") == "p" for e in items) == 2
    r = _aws_cli(server.url, "--campaign-arn", ARN, "--item-id", "nope", tmp_path=tmp_path)
    assert r.returncode == 255
    assert "An error occurred (InvalidInputException) when calling the GetRecommendations" in r.stderr


# --------------------------------------------------------------------------- rankcore recommend

def test_cli_recommend(model_dir, local, capsys):
    code = cli_main(["recommend", "--model", str(model_dir), "--user-id", "12", "--num-results", "6",
                     "--campaign-name", "demo"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    want = local.get_recommendations(campaignArn=ARN, userId="12", numResults=6)
    assert out["itemList"] == want["itemList"] and out["recommendationId"].startswith("RID-")
    code = cli_main(["recommend", "--model", str(model_dir), "--item-id", "7", "--num-results", "8",
                     "--filter-expression", FILTER_EXPR, "--filter-values", 'GENRE="Comedy"',
                     "--promotion", json.dumps({"name": "p", "percentPromotedItems": 25,
                                                "filterExpression": FILTER_EXPR,
                                                "filterValues": {"GENRE": '"Drama"'}}),
                     "--metadata-columns", "ITEMS=GENRE"])
    items = json.loads(capsys.readouterr().out)["itemList"]
    assert code == 0 and len(items) == 8 and "7" not in [e["itemId"] for e in items]
    for e in items:
        assert ("Drama" if e.get("promotionName") == "p" else "Comedy") in e["metadata"]["GENRE"]


@pytest.mark.parametrize("args,match", [
    ([], "--user-id or --item-id"),
    (["--item-id", "nope"], "not in the model"),
    (["--user-id", "1", "--filter-values", "A=b"], "needs --filter-expression"),
    (["--user-id", "1", "--promotion", '{"name": "p", "percentPromotedItems": 5}'], "filterExpression"),
    (["--user-id", "1", "--num-results", "501"], "500"),
])
def test_cli_recommend_errors(model_dir, capsys, args, match):
    assert cli_main(["recommend", "--model", str(model_dir), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rankcore: error:") and match in err and "Traceback" not in err
