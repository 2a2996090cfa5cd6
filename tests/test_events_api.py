"""The events API: PutEvents, PutItems and PutUsers in-process and over the wire.

In-process: the effects on filters, metadata and scores (an anonymous session of clicks on one
genre lifts that genre, measured as the NDCG of its items on the planted synthetic data), the
session-to-user hand-over, the store written before a put returns and replayed by a new
campaign. Over the wire (``rankcore serve`` on 127.0.0.1): boto3's and the AWS CLI's
``personalize-events`` for the three calls, the service's errors for bad requests (nothing
stored), durability across SIGKILL, two workers seeing each other's events, and
``rankcore events export`` feeding ``rankcore train``.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from rankcore import Campaign, InvalidInputException, ResourceNotFoundException
from rankcore.cli import main as cli_main
from rankcore.datasets import synthetic
from rankcore.model import load_model
from rankcore.personalize.event_store import EventStore

from test_server import _env, _free_port

SIZES = dict(n_users=200, n_items=2000, dim=32)
REGION, ACCOUNT = "us-east-1", "000000000000"
ITEMS_ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/demo/ITEMS"
USERS_ARN = f"arn:aws:personalize:{REGION}:{ACCOUNT}:dataset/demo/USERS"
TRACKING = "track-demo"
CANDIDATES = [str(i) for i in range(300)]
SEEN = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
HORROR = 'INCLUDE ItemID WHERE Items.GENRE IN ("Horror")'
ADULT = 'EXCLUDE ItemID WHERE Items.GENRE IN ("Horror") IF CurrentUser.AGE > 30'


@pytest.fixture(scope="module")
def model():
    return synthetic(**SIZES, seed=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("models") / "demo"
    model.save(path)
    return path


def genre_ndcg(model, item_ids, genre: str) -> float:
    """NDCG of the items of ``genre`` in a ranking (relevance 1 for the genre's items)."""
    col = model.item_columns["GENRE"]
    rel = np.array([genre in col.values_of(int(i)) for i in item_ids], dtype=float)
    discount = 1.0 / np.log2(np.arange(len(rel)) + 2)
    ideal = discount[:int(rel.sum())].sum()
    return float((rel * discount).sum() / ideal)


def clicks(items, event_type="click"):
    return [{"itemId": str(i), "eventType": event_type, "sentAt": 1.7e9 + k} for k, i in enumerate(items)]


def genre_items(model, genre: str, n: int, start: int = 300) -> list:
    col = model.item_columns["GENRE"]
    return [i for i in range(start, model.n_items) if genre in col.values_of(i)][:n]


# --------------------------------------------------------------------------- in-process
def test_anonymous_session_lifts_the_clicked_genre(model):
    c = Campaign(model, name="demo")
    for genre in ("Horror", "Documentary"):
        session = f"sess-{genre}"
        before = genre_ndcg(model, c.rank(session, CANDIDATES).scored_item_ids, genre)
        c.put_events(None, clicks(genre_items(model, genre, 10)), session_id=session)
        after = genre_ndcg(model, c.rank(session, CANDIDATES).scored_item_ids, genre)
        assert after > before + 0.1, (genre, before, after)
    # a session the events never named ranks as before (the cold-start vector)
    assert np.array_equal(c.user_vector("sess-other"), model.cold_start)
    # rank_batch and rank_many take the same moved vector
    single = c.rank("sess-Horror", CANDIDATES)
    assert c.rank_batch([("sess-Horror", CANDIDATES)])[0].scored_item_ids == single.scored_item_ids
    order, _, _, _, _ = c.rank_many(["sess-Horror"], CANDIDATES, np.array([0, len(CANDIDATES)]))
    assert [CANDIDATES[i] for i in order] == single.scored_item_ids


def test_known_user_moves_and_a_session_counts_for_its_user_once_signed_in(model):
    c = Campaign(model, name="demo")
    horror = genre_items(model, "Horror", 10)
    before = genre_ndcg(model, c.rank("7", CANDIDATES).scored_item_ids, "Horror")
    c.put_events(None, clicks(horror), session_id="s-7")  # anonymous first
    assert np.array_equal(c.user_vector("7"), model.user_embeddings[7])
    c.put_events("7", clicks([horror[0]]), session_id="s-7")  # the session signs in
    after = genre_ndcg(model, c.rank("7", CANDIDATES).scored_item_ids, "Horror")
    assert after > before
    rows, types = c.data.recent_interactions("7")
    assert set(rows.tolist()) >= set(horror) and set(types) >= {"click"}
    # later anonymous events of that session count for the user as well
    c.put_events(None, clicks([5]), session_id="s-7")
    assert 5 in c.data.recent_interactions("7")[0].tolist()


def test_interactions_filters_see_events(model):
    c = Campaign(model, name="demo")
    seen = c.create_filter("seen", SEEN)
    c.put_events("u-new", clicks(range(10)))
    kept = c.rank("u-new", CANDIDATES[:20], filter=seen).scored_item_ids
    assert sorted(kept, key=int) == CANDIDATES[10:20]


def test_put_items_feeds_items_filters_and_metadata_columns(model):
    c = Campaign(model, name="demo")
    horror = c.create_filter("horror", HORROR)
    item = next(str(i) for i in range(model.n_items)
                if "Horror" not in model.item_columns["GENRE"].values_of(i))
    assert item not in c.rank("1", [item], filter=horror).scored_item_ids
    c.put_items([{"itemId": item, "properties": json.dumps({"genre": "Horror|Comedy", "price": 12.5})},
                 {"itemId": "brand-new", "properties": json.dumps({"genre": "Horror"})}])
    assert c.rank("1", [item], filter=horror).scored_item_ids == [item]
    response = c.rank("1", [item, "brand-new"], metadata_columns=["GENRE", "PRICE"]).to_response()
    assert response["personalizedRanking"][0] == {
        "itemId": item, "score": 1.0, "metadata": {"GENRE": "Horror|Comedy", "PRICE": "12.5"}}
    assert response["personalizedRanking"][1] == {"itemId": "brand-new"}  # no embedding: unknown
    assert model.item_columns["GENRE"].values_of(int(item)) != ["Horror", "Comedy"]  # model untouched
    with pytest.raises(InvalidInputException, match="price"):
        c.put_items([{"itemId": "1", "properties": json.dumps({"price": "cheap"})}])


def test_put_users_feeds_current_user_conditions(model):
    c = Campaign(model, name="demo")
    adult = c.create_filter("adult", ADULT)
    n_all = len(c.rank("newcomer", CANDIDATES, filter=adult).scored_item_ids)
    assert n_all == len(CANDIDATES)  # an unknown user matches no CurrentUser condition
    c.put_users([{"userId": "newcomer", "properties": json.dumps({"age": 40})},
                 {"userId": "0", "properties": json.dumps({"age": 10})}])
    horror = {str(i) for i in genre_items(model, "Horror", 10_000, start=0)} & set(CANDIDATES)
    kept = set(c.rank("newcomer", CANDIDATES, filter=adult).scored_item_ids)
    assert kept == set(CANDIDATES) - horror and horror
    assert len(c.rank("0", CANDIDATES, filter=adult).scored_item_ids) == len(CANDIDATES)


def test_bad_requests_record_nothing(model, tmp_path):
    with EventStore(tmp_path / "events.db") as store:
        c = Campaign(model, name="demo", event_store=store)
        bad = [
            ([{"eventType": "click", "itemId": "1"}], "sentAt"),
            (clicks(range(11)), "1 to 10"),
            ([{"eventType": "c", "sentAt": 1.0, "properties": json.dumps({"p": "x" * 11000})}], "properties"),
            ([{"eventType": "c", "sentAt": 1.0, "impression": [str(i) for i in range(26)]}], "impression"),
            ([{"eventType": "c", "sentAt": 1.0, "properties": "[1]"}], "JSON object"),
        ]
        for events, message in bad:
            with pytest.raises(InvalidInputException, match=message):
                c.put_events("u", events)
        with pytest.raises(ResourceNotFoundException):
            c.feed.put_events("no-such-tracker", None, "s", clicks([1]))
        with pytest.raises(ResourceNotFoundException):
            c.feed.put_items("arn:aws:personalize:us-east-1:0:dataset/other/ITEMS", [{"itemId": "1"}])
        assert store.counts() == {"events": 0, "items": 0, "users": 0}


def test_store_is_written_and_replayed(model, tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        c = Campaign(model, name="demo", event_store=store, tracking_id=TRACKING)
        assert c.event_store is store and c.tracking_id == TRACKING
        c.put_events(None, clicks(genre_items(model, "Horror", 10)), session_id="sess")
        c.put_users([{"userId": "newcomer", "properties": json.dumps({"age": 40})}])
        assert store.counts() == {"events": 10, "items": 0, "users": 1}  # committed on return
        moved = c.user_vector("sess")
    with EventStore(path) as store:
        again = Campaign(model, name="demo", event_store=store, tracking_id=TRACKING)
        assert np.array_equal(again.user_vector("sess"), moved)
        adult = again.create_filter("adult", ADULT)
        assert len(again.rank("newcomer", CANDIDATES, filter=adult).scored_item_ids) < len(CANDIDATES)
        other = Campaign(model, name="demo", event_store=store, tracking_id="another")
        assert np.array_equal(other.user_vector("sess"), model.cold_start)  # not its tracking ID
    assert Campaign(model, name="demo").event_store is None  # in memory by default


# --------------------------------------------------------------------------- over the wire
@contextlib.contextmanager
def serve(*args: str, timeout: float = 60.0):
    """``rankcore serve ARGS`` in its own process group; yields the process (``.url``, ``.out``)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "rankcore", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--no-reload", *args]
    log = open(os.devnull, "w")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)
    proc.url = f"http://127.0.0.1:{port}"
    lines = []
    try:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("rankcore serving on") for line in lines):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {''.join(lines)}")
            lines.append(line)
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
        proc.out = "".join(lines)
        while True:
            try:
                if httpx.get(proc.url + "/ping", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.wait()
        proc.stdout.close()
        log.close()


def _server_args(model_dir, store) -> list:
    return ["--campaign", f"demo={model_dir}", "--event-store", str(store), "--tracking-id",
            f"demo={TRACKING}", "--filter", f"seen={SEEN}", "--filter", f"horror={HORROR}",
            "--filter", f"adult={ADULT}"]


def _rank(url, user, items=CANDIDATES, flt=None, **extra) -> list:
    body = {"campaignArn": f"arn:aws:personalize:{REGION}:{ACCOUNT}:campaign/demo", "userId": user,
            "inputList": list(items), **extra}
    if flt:
        body["filterArn"] = f"arn:aws:personalize:{REGION}:{ACCOUNT}:filter/{flt}"
    r = httpx.post(url + "/personalize-ranking", json=body, headers={"connection": "close"})
    assert r.status_code == 200, r.text
    return [e["itemId"] for e in r.json()["personalizedRanking"]]


def eventually(check, timeout: float = 20.0):
    """Poll ``check()`` until it returns a true value (the server applies events within its poll
    interval, a fraction of a second; the timeout only bounds a broken server)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "the effect never showed"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    store = tmp_path_factory.mktemp("events") / "events.db"
    with serve(*_server_args(model_dir, store)) as proc:
        proc.store = store
        yield proc


@pytest.fixture(scope="module")
def events_client(server):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    return boto3.client("personalize-events", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 1}))


def test_startup_prints_tracking_id_and_dataset_arns(server):
    assert f"tracking ID {TRACKING}" in server.out
    assert ITEMS_ARN in server.out and USERS_ARN in server.out
    assert f"events stored in {server.store}" in server.out


def test_boto3_three_calls_take_effect(server, events_client, model):
    horror = genre_items(model, "Horror", 10)
    before = genre_ndcg(model, _rank(server.url, "boto-session"), "Horror")
    r = events_client.put_events(trackingId=TRACKING, sessionId="boto-session", eventList=[
        {"eventType": "click", "itemId": str(i), "sentAt": datetime.datetime.now(datetime.timezone.utc)}
        for i in horror])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and set(r) == {"ResponseMetadata"}
    eventually(lambda: genre_ndcg(model, _rank(server.url, "boto-session"), "Horror") > before + 0.1)
    assert not set(map(str, horror)) & set(_rank(server.url, "boto-session", map(str, horror), "seen"))

    plain = next(str(i) for i in range(model.n_items)
                 if "Horror" not in model.item_columns["GENRE"].values_of(i))
    events_client.put_items(datasetArn=ITEMS_ARN, items=[
        {"itemId": plain, "properties": json.dumps({"genre": "Horror"})}])
    eventually(lambda: _rank(server.url, "1", [plain], "horror") == [plain])

    events_client.put_users(datasetArn=USERS_ARN, users=[
        {"userId": "boto-user", "properties": json.dumps({"age": 50})}])
    eventually(lambda: len(_rank(server.url, "boto-user", flt="adult")) < len(CANDIDATES))


def test_boto3_errors_and_nothing_stored(server, events_client):
    with EventStore(server.store) as store:
        counts = store.counts()
    client_errors = events_client.exceptions
    with pytest.raises(client_errors.ResourceNotFoundException):
        events_client.put_events(trackingId="unknown", sessionId="s", eventList=clicks([1]))
    with pytest.raises(client_errors.ResourceNotFoundException):
        events_client.put_items(datasetArn=ITEMS_ARN.replace("demo", "other"), items=[{"itemId": "1"}])
    with pytest.raises(client_errors.InvalidInputException, match="1 to 10"):
        events_client.put_events(trackingId=TRACKING, sessionId="s", eventList=clicks(range(11)))
    with pytest.raises(client_errors.InvalidInputException, match="properties"):
        events_client.put_events(trackingId=TRACKING, sessionId="s", eventList=[
            {"eventType": "c", "sentAt": 1.0, "properties": json.dumps({"p": "x" * 11000})}])
    with pytest.raises(client_errors.InvalidInputException, match="JSON"):
        events_client.put_users(datasetArn=USERS_ARN, users=[{"userId": "u", "properties": "{oops"}])
    # boto3 refuses a missing sentAt itself; over plain HTTP the server does
    r = httpx.post(server.url + "/events", json={"trackingId": TRACKING, "sessionId": "s",
                                                 "eventList": [{"eventType": "click", "itemId": "1"}]})
    assert r.status_code == 400 and r.json()["__type"] == "InvalidInputException"
    assert "sentAt" in r.json()["message"] and r.headers["x-amzn-ErrorType"] == "InvalidInputException"
    r = httpx.post(server.url + "/events", json={"trackingId": "nope", "sessionId": "s",
                                                 "eventList": clicks([1])})
    assert r.status_code == 404 and r.json()["__type"] == "ResourceNotFoundException"
    with EventStore(server.store) as store:
        assert store.counts() == counts


def _aws(url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "aws-config"
    cfg.write_text("")
    env = _env()
    env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(cfg), AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "awscli", "personalize-events", *args,
                           "--endpoint-url", url], env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli_three_calls(server, tmp_path):
    pytest.importorskip("awscli")
    events = json.dumps([{"eventType": "click", "itemId": "3", "sentAt": 1.7e9}])
    r = _aws(server.url, tmp_path, "put-events", "--tracking-id", TRACKING, "--user-id", "cli-user",
             "--session-id", "cli-session", "--event-list", events)
    assert r.returncode == 0, r.stderr
    eventually(lambda: "3" not in _rank(server.url, "cli-user", ["3", "4"], "seen"))
    r = _aws(server.url, tmp_path, "put-items", "--dataset-arn", ITEMS_ARN, "--items",
             json.dumps([{"itemId": "4", "properties": json.dumps({"genre": "Horror"})}]))
    assert r.returncode == 0, r.stderr
    eventually(lambda: _rank(server.url, "1", ["4"], "horror") == ["4"])
    r = _aws(server.url, tmp_path, "put-users", "--dataset-arn", USERS_ARN, "--users",
             json.dumps([{"userId": "cli-user", "properties": json.dumps({"age": 60})}]))
    assert r.returncode == 0, r.stderr
    eventually(lambda: "4" not in _rank(server.url, "cli-user", ["4", "5"], "adult"))
    r = _aws(server.url, tmp_path, "put-events", "--tracking-id", "unknown", "--session-id", "s",
             "--event-list", events)
    assert r.returncode != 0 and "ResourceNotFoundException" in r.stderr


def test_no_accepted_event_is_lost_on_sigkill(model_dir, tmp_path):
    store = tmp_path / "events.db"
    n_calls = 8
    with serve(*_server_args(model_dir, store)) as proc:
        with httpx.Client() as http:
            for c in range(n_calls):
                r = http.post(proc.url + "/events", json={
                    "trackingId": TRACKING, "userId": "durable", "sessionId": "d",
                    "eventList": [{"eventId": f"{c}-{k}", "eventType": "click", "itemId": str(10 * c + k),
                                   "sentAt": 1.7e9} for k in range(10)]})
                assert r.status_code == 200 and r.content == b""
        os.killpg(proc.pid, signal.SIGKILL)
    with EventStore(store) as s:
        assert s.counts()["events"] == 10 * n_calls
        assert {r.event_id for r in s.replay()} == {f"{c}-{k}" for c in range(n_calls) for k in range(10)}
    with serve(*_server_args(model_dir, store)) as proc:  # a restart replays the store
        kept = _rank(proc.url, "durable", CANDIDATES[:100], "seen")  # replayed before serving
        assert sorted(kept, key=int) == CANDIDATES[10 * n_calls:100]


def test_two_workers_see_each_others_events(model_dir, tmp_path):
    with serve(*_server_args(model_dir, tmp_path / "events.db"), "--workers", "2") as proc:
        for k in range(6):  # new connections: the writes land on either worker
            r = httpx.post(proc.url + "/events", headers={"connection": "close"}, json={
                "trackingId": TRACKING, "userId": "shared", "sessionId": "x",
                "eventList": clicks([k])})
            assert r.status_code == 200
        deadline = time.monotonic() + 30  # generous: a loaded machine; a worker polls every 0.15 s
        agreeing = 0
        while agreeing < 10:  # ten fresh connections in a row all see every event
            ranked = sorted(_rank(proc.url, "shared", CANDIDATES[:10], "seen"), key=int)
            agreeing = agreeing + 1 if ranked == CANDIDATES[6:10] else 0
            assert time.monotonic() < deadline, ranked


def test_export_feeds_train(model, tmp_path):
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        c = Campaign(model, name="demo", event_store=store)
        rng = np.random.default_rng(0)
        for u in range(40):
            c.put_events(None, clicks(rng.choice(200, 10, replace=False)), session_id=f"s{u}")
            c.put_events(f"user-{u}", clicks(rng.choice(200, 10, replace=False)), session_id=f"s{u}")
    out = tmp_path / "interactions.csv"
    assert cli_main(["events", "export", "--store", str(path), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE" and len(lines) == 801
    assert all(line.startswith("user-") for line in lines[1:])  # sessions go to their users
    assert cli_main(["train", "--interactions", str(out), "--out", str(tmp_path / "m"),
                     "--factors", "8", "--iterations", "2"]) == 0
    trained = load_model(tmp_path / "m")
    assert trained.n_users == 40 and trained.n_items <= 200
    assert cli_main(["events", "export", "--store", str(tmp_path / "none.db"), "--out", str(out)]) == 1


def test_sigv4_for_the_events_service(model_dir, tmp_path):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import ClientError

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"AKIDRIGHT": "right-secret"}))
    with serve(*_server_args(model_dir, tmp_path / "events.db"), "--auth", "sigv4",
               "--credentials", str(creds)) as proc:
        def client(secret):
            return boto3.client("personalize-events", endpoint_url=proc.url, region_name=REGION,
                                aws_access_key_id="AKIDRIGHT", aws_secret_access_key=secret,
                                config=Config(retries={"max_attempts": 1}))

        request = dict(trackingId=TRACKING, sessionId="signed", eventList=clicks([1]))
        assert client("right-secret").put_events(**request)["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(ClientError) as e:
            client("wrong-secret").put_events(**request)
        assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
        r = httpx.post(proc.url + "/events", json={"trackingId": TRACKING, "sessionId": "s",
                                                   "eventList": clicks([1])})
        assert r.status_code == 403
    with EventStore(tmp_path / "events.db") as store:
        assert store.counts()["events"] == 1
