"""rankcore.Client as a drop-in for boto3.client("personalize-runtime"), and the service limits.

The seed request (``SEED``) is run through one function written for boto3,
first with ``rankcore.Client`` and then with a real boto3 client whose transport is a botocore
``Stubber`` fed rankcore's response: botocore validates the request parameters and the response
against the service model, and the function's output must be the same both ways.
"""
import math
import pickle

import numpy as np
import pytest

import rankcore
from rankcore import Campaign, Client, InvalidInputException
from rankcore.core import native
from rankcore.personalize import validate_request
from rankcore.personalize.validate import first_bad_id_py

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402
from botocore.stub import Stubber  # noqa: E402

GENRES = ["comedy", "drama", "horror", "comedy|drama", "action"]


def seed_model():
    rng = np.random.default_rng(3)
    n = 20
    return rankcore.Model.from_arrays(
        [str(i) for i in range(1, n + 1)], rng.standard_normal((n, 8)),
        user_ids=["12", "13"], user_embeddings=rng.standard_normal((2, 8)),
        context={"DEVICE": {"phone": rng.standard_normal(8), "desktop": rng.standard_normal(8)}},
        item_metadata={"GENRE": [GENRES[i % 5] for i in range(n)], "PRICE": [float(i) / 4 for i in range(n)]})


class GenreFilter:
    """Stand-in for INCLUDE ItemID WHERE Items.GENRE IN ($GENRES)."""

    def evaluate(self, data, user_id, item_rows, filter_values):
        wanted = [v.strip().strip('"') for v in filter_values["GENRES"].split(",")]
        col = data.item_columns["GENRE"]
        return col.any_in(item_rows, col.codes_for(wanted))


CAMPAIGN = Campaign(seed_model(), name="movies")
FILTER_ARN = "arn:aws:personalize:us-east-1:000000000000:filter/genres"
CAMPAIGN.filters[FILTER_ARN] = GenreFilter()
SEED = {"campaignArn": CAMPAIGN.arn, "userId": "12", "inputList": ["3", "4"],
        "context": {"DEVICE": "phone"}, "filterArn": FILTER_ARN,
        "filterValues": {"GENRES": "\"comedy\",\"drama\""}, "metadataColumns": {"ITEMS": ["genre"]}}


def personalized_genres(personalize_runtime, request):
    """Application code written against boto3's personalize-runtime client."""
    try:
        response = personalize_runtime.get_personalized_ranking(**request)
    except personalize_runtime.exceptions.ResourceNotFoundException as e:
        return ("missing", e.response["Error"]["Code"])
    except ClientError as e:
        return ("error", e.response["Error"]["Code"])
    return [(item["itemId"], item.get("score"), item.get("metadata", {}).get("genre"))
            for item in response["personalizedRanking"]], response["recommendationId"][:4]


def boto_client():
    return boto3.client("personalize-runtime", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def client():
    return Client([CAMPAIGN])


def test_seed_example_runs_unchanged_against_boto3(client):
    ours = personalized_genres(client, SEED)
    items, rid = ours
    assert rid == "RID-"
    # "3" is horror (filtered out), "4" is comedy|drama: the only item left gets all the mass
    assert items == [("4", 1.0, "comedy|drama")]

    response = client.get_personalized_ranking(**SEED)
    real = boto_client()
    with Stubber(real) as stub:  # validates our params and our response against the service model
        body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        stub.add_response("get_personalized_ranking", body, expected_params=SEED)
        theirs = personalized_genres(real, SEED)
        stub.assert_no_pending_responses()
    assert [(i, g) for i, _, g in theirs[0]] == [(i, g) for i, _, g in client_items(response)]

    missing = dict(SEED, campaignArn=CAMPAIGN.arn + "-old")
    assert personalized_genres(client, missing) == ("missing", "ResourceNotFoundException")
    with Stubber(real) as stub:
        stub.add_client_error("get_personalized_ranking", "ResourceNotFoundException", "gone", 404)
        assert personalized_genres(real, missing) == ("missing", "ResourceNotFoundException")
    too_long = dict(SEED, userId="u" * 257)
    assert personalized_genres(client, too_long) == ("error", "InvalidInputException")


def client_items(response):
    return [(x["itemId"], x.get("score"), x.get("metadata", {}).get("genre"))
            for x in response["personalizedRanking"]]


def test_response_shape(client):
    resp = client.get_personalized_ranking(campaignArn=CAMPAIGN.arn, userId="nobody",
                                           inputList=["1", "zz", "2", "1", "yy", "3"])
    assert set(resp) == {"personalizedRanking", "recommendationId", "ResponseMetadata"}
    ranking = resp["personalizedRanking"]
    assert [x["itemId"] for x in ranking[-2:]] == ["zz", "yy"]
    assert all(set(x) == {"itemId"} for x in ranking[-2:])
    scores = [x["score"] for x in ranking[:-2]]
    assert all(isinstance(s, float) and round(s, 7) == s for s in scores)
    assert abs(sum(scores) - 1) < 1e-5 and scores == sorted(scores, reverse=True)
    assert resp["recommendationId"].startswith("RID-")
    meta = resp["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RequestId"] == meta["HTTPHeaders"]["x-amzn-requestid"]

    def no_none(x):
        if isinstance(x, dict):
            return all(v is not None and no_none(v) for v in x.values())
        if isinstance(x, list):
            return all(no_none(v) for v in x)
        return not (isinstance(x, float) and math.isnan(x))
    assert no_none(resp)


def test_scores_rounded_to_seven_decimals(client):
    resp = client.get_personalized_ranking(campaignArn=CAMPAIGN.arn, userId="12",
                                           inputList=[str(i) for i in range(1, 21)])
    raw = CAMPAIGN.rank("12", [x["itemId"] for x in resp["personalizedRanking"]])
    for entry, s in zip(resp["personalizedRanking"], raw.scores.tolist()):
        assert abs(entry["score"] - s) <= 5e-8 + 1e-7
        assert len(repr(entry["score"]).split(".")[-1].rstrip("0")) <= 7 or "e" in repr(entry["score"])


def test_metadata_in_response(client):
    resp = client.get_personalized_ranking(campaignArn=CAMPAIGN.arn, userId="12", inputList=["2", "x", "5"],
                                           metadataColumns={"ITEMS": ["GENRE", "price"]})
    by_id = {x["itemId"]: x for x in resp["personalizedRanking"]}
    assert by_id["2"]["metadata"] == {"GENRE": "drama", "price": "0.25"}
    assert by_id["5"]["metadata"] == {"GENRE": "action", "price": "1"}
    assert "metadata" not in by_id["x"]


def test_exceptions_are_botocore_and_python(client):
    exc = client.exceptions
    assert issubclass(exc.InvalidInputException, ClientError)
    assert issubclass(exc.InvalidInputException, ValueError)
    assert issubclass(exc.InvalidInputException, rankcore.InvalidInputException)
    assert issubclass(exc.ResourceNotFoundException, LookupError)
    assert issubclass(exc.ResourceNotFoundException, rankcore.ResourceNotFoundException)
    assert exc.ClientError is ClientError
    with pytest.raises(exc.ResourceNotFoundException) as info:
        client.get_personalized_ranking(campaignArn="arn:aws:personalize:x:1:campaign/none", userId="1",
                                        inputList=["1"])
    e = info.value
    assert e.response["Error"] == {"Code": "ResourceNotFoundException",
                                   "Message": "Resource arn:aws:personalize:x:1:campaign/none does not exist."}
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert str(e).startswith("An error occurred (ResourceNotFoundException) when calling the "
                             "GetPersonalizedRanking operation: ")
    with pytest.raises(exc.ResourceNotFoundException):
        client.get_personalized_ranking(**dict(SEED, filterArn=FILTER_ARN + "x"))


def test_client_exceptions_pickle(client):
    """Client errors cross process boundaries (e.g. from a worker) with their class and message."""
    for cls in (client.exceptions.InvalidInputException, client.exceptions.ResourceNotFoundException):
        e = pickle.loads(pickle.dumps(cls("bad input", "GetPersonalizedRanking")))
        assert type(e) is cls
        assert e.message == "bad input" and e.response["Error"]["Code"] == cls.__name__


def test_client_from_mapping_and_item_limit():
    arn = "arn:aws:personalize:eu-west-1:123456789012:campaign/alias"
    client = Client({arn: CAMPAIGN}, max_input_items=None)
    ids = [str(i % 20 + 1) for i in range(600)]
    resp = client.get_personalized_ranking(campaignArn=arn, userId="12", inputList=ids)
    assert len(resp["personalizedRanking"]) == 20
    with pytest.raises(client.exceptions.InvalidInputException, match="50"):
        client.get_personalized_ranking(campaignArn=arn, userId="12", inputList=ids[:51],
                                        metadataColumns={"ITEMS": ["GENRE"]})
    assert Client(CAMPAIGN).campaigns == {CAMPAIGN.arn: CAMPAIGN}


def test_semantic_errors_become_invalid_input(client):
    with pytest.raises(client.exceptions.InvalidInputException, match="LOCATION"):
        client.get_personalized_ranking(**dict(SEED, context={"LOCATION": "home"}))
    with pytest.raises(client.exceptions.InvalidInputException, match="nope"):
        client.get_personalized_ranking(**dict(SEED, metadataColumns={"ITEMS": ["nope"]}))


A = "arn:aws:personalize:us-east-1:000000000000:campaign/movies"
OK = {"campaignArn": A, "userId": "12", "inputList": ["3"]}
LIMIT_CASES = [
    ({"campaignArn": None}, "campaignArn"),
    ({"userId": None}, "userId"),
    ({"inputList": None}, "inputList"),
    ({"campaignArn": "campaign/movies"}, "regular expression"),
    ({"campaignArn": "arn:aws:s3:::bucket"}, "regular expression"),
    ({"campaignArn": "arn:aws:personalize:us-east-1:000000000000:campaign/" + "m" * 210}, "256"),
    ({"filterArn": "not-an-arn"}, "filterArn"),
    ({"userId": "u" * 257}, "userId"),
    ({"inputList": ["i" * 257]}, "inputList.1.member"),
    ({"inputList": [str(i) for i in range(501)]}, "500"),
    ({"inputList": [str(i) for i in range(51)], "metadataColumns": {"ITEMS": ["GENRE"]}}, "50"),
    ({"context": {f"K{i}": "v" for i in range(151)}}, "150"),
    ({"context": {"BAD-KEY": "v"}}, "context.key"),
    ({"context": {"K" * 151: "v"}}, "context.key"),
    ({"context": {"DEVICE": "v" * 1001}}, "1000"),
    ({"filterValues": {f"K{i}": '"v"' for i in range(26)}}, "25"),
    ({"filterValues": {"BAD KEY": '"v"'}}, "filterValues.key"),
    ({"filterValues": {"K" * 51: '"v"'}}, "50"),
    ({"filterValues": {"K": "v" * 1001}}, "1000"),
    ({"metadataColumns": {"ITEMS": ["a"], "USERS": ["b"]}}, "metadataColumns"),
    ({"metadataColumns": {"USERS": ["AGE"]}}, "ITEMS"),
    ({"metadataColumns": {"ITEMS": [f"c{i}" for i in range(11)]}}, "10"),
    ({"metadataColumns": {"ITEMS": ["c" * 151]}}, "150"),
    ({"unexpected": 1}, "Unknown parameter"),
    ({"userId": 12}, "Invalid type for parameter userId"),
    ({"inputList": "3"}, "Invalid type for parameter inputList"),
    ({"inputList": ["3", 4]}, "inputList[1]"),
    ({"context": {"DEVICE": 1}}, "context.DEVICE"),
    ({"context": ["DEVICE"]}, "context"),
    ({"metadataColumns": {"ITEMS": "GENRE"}}, "metadataColumns.ITEMS"),
]


@pytest.mark.parametrize("patch, fragment", LIMIT_CASES)
def test_limits(client, patch, fragment):
    body = dict(OK, **patch)
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidInputException, match=None) as info:
        validate_request(body)
    assert fragment in str(info.value), str(info.value)
    with pytest.raises(client.exceptions.InvalidInputException) as info:
        client.get_personalized_ranking(**body)
    assert fragment in info.value.response["Error"]["Message"]


def test_limit_boundaries_pass():
    body = dict(OK, campaignArn="arn:aws:personalize:us-east-1:000000000000:campaign/" + "m" * 204,
                userId="u" * 256, inputList=["i" * 256] + [str(i) for i in range(499)],
                context={f"K_{i}": "v" * 1000 for i in range(150)},
                filterArn="arn:aws-cn:personalize:cn-north-1:1:filter/x",
                filterValues={"K" * 50: '"' + "v" * 998 + '"', **{f"P{i}": '"x"' for i in range(24)}})
    assert len(body["campaignArn"]) == 256
    validate_request(body)
    validate_request(dict(OK, inputList=[str(i) for i in range(50)],
                          metadataColumns={"ITEMS": ["c" * 150] + [f"c{i}" for i in range(9)]}))
    validate_request(dict(OK, inputList=[str(i) for i in range(900)]), max_input_items=None)
    with pytest.raises(InvalidInputException, match="2 validation errors"):
        validate_request(dict(OK, userId="u" * 257, campaignArn="bad"))
    with pytest.raises(InvalidInputException):
        validate_request(["not", "a", "dict"])


@pytest.mark.parametrize("ids", [[], ["a"], ["a", 1], ("x" * 257, "a"), ["a", "é" * 256],
                                 ["a", "é" * 257], ("a", None), ["b", b"bytes"]])
def test_first_bad_id_native_matches_python(ids):
    expected = next((i for i, v in enumerate(ids) if not isinstance(v, str) or len(v) > 256), -1)
    assert first_bad_id_py(ids, 256) == expected
    if native.HAS_NATIVE:
        assert native.core.first_bad_id(ids, 256) == expected


def test_bad_values_are_quoted_short_never_whole():
    """Issue 11, item 12: a 10 MB bad value is not echoed back in the error message."""
    huge = "x" * 10_000_000
    for body in ({"campaignArn": huge, "userId": "1", "inputList": []},
                 {"campaignArn": "arn:aws:personalize:us-east-1:1:campaign/c", "userId": 5,
                  "inputList": [huge]},
                 {"campaignArn": "arn:aws:personalize:us-east-1:1:campaign/c", "userId": "1",
                  "inputList": {"k": huge}},
                 {"campaignArn": "arn:aws:personalize:us-east-1:1:campaign/c", "userId": "1",
                  "inputList": [huge[:300]], "context": {"A": [huge] * 1000}}):
        with pytest.raises(InvalidInputException) as err:
            validate_request(body)
        assert len(str(err.value)) < 500, str(err.value)[:200]
