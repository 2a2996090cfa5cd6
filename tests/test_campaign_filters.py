"""Filters and real-time events through Campaign and Client (docs/personalize.md).

The filter language itself is tested in ``test_filters.py``; here: registration, ARNs, removal
and renormalisation, unknown items, PutEvents visibility and thread safety, Personalize errors.
"""
import datetime
import threading

import numpy as np
import pytest

import rankcore
from rankcore import datasets
from rankcore.filters import FilterSyntaxError


@pytest.fixture(scope="module")
def model():
    return datasets.synthetic(n_users=40, n_items=300, dim=16, seed=3)


@pytest.fixture
def campaign(model):
    return rankcore.Campaign(model, name="films")


def genres(model, item_id):
    col = model.item_columns["GENRE"]
    return set(col.values_of(int(model.item_rows([item_id])[0])))


def test_create_filter_returns_arn_and_validates(campaign):
    arn = campaign.create_filter("comedy", 'INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")')
    assert arn == "arn:aws:personalize:us-east-1:000000000000:filter/comedy"
    assert arn in campaign.filters
    with pytest.raises(FilterSyntaxError):
        campaign.create_filter("bad", "INCLUDE ItemID WHER Items.GENRE IN (\"x\")")
    with pytest.raises(ValueError, match="NOPE"):
        campaign.create_filter("unknown", 'INCLUDE ItemID WHERE Items.NOPE IN ("x")')
    with pytest.raises(ValueError):
        campaign.create_filter("bad name!", 'INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")')
    campaign.delete_filter(arn)
    with pytest.raises(rankcore.ResourceNotFoundException):
        campaign.rank("1", ["1", "2"], filter=arn)


def test_include_filter_removes_and_renormalises(campaign, model):
    arn = campaign.create_filter("g", "INCLUDE ItemID WHERE Items.GENRE IN ($GENRES)")
    ids = [str(i) for i in range(60)] + ["not-an-item"]
    r = campaign.rank("5", ids, filter=arn, filter_values={"GENRES": '"Comedy","Drama"'})
    kept = r.scored_item_ids
    expected = [i for i in ids[:60] if genres(model, i) & {"Comedy", "Drama"}]
    assert sorted(kept, key=int) == sorted(expected, key=int) and kept
    assert abs(float(np.sum(r.scores, dtype=np.float64)) - 1) < 1e-5
    assert r.unknown_item_ids == []  # unknown items match no INCLUDE condition
    # same scores as ranking only the kept items
    plain = campaign.rank("5", expected)
    assert dict(zip(plain.scored_item_ids, plain.scores.tolist())) == dict(zip(kept, r.scores.tolist()))


def test_exclude_keeps_unknown_items_last(campaign, model):
    arn = campaign.create_filter("noc", 'EXCLUDE ItemID WHERE Items.GENRE IN ("Comedy")')
    ids = ["zz-1"] + [str(i) for i in range(30)] + ["zz-2"]
    r = campaign.rank("5", ids, filter=arn)
    assert r.unknown_item_ids == ["zz-1", "zz-2"]
    assert r.item_ids[-2:] == ["zz-1", "zz-2"]
    assert all("Comedy" not in genres(model, i) for i in r.scored_item_ids)


def test_put_events_feeds_interaction_filters(campaign):
    arn = campaign.create_filter("unseen", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')
    user = "user-without-history"
    ids = ["10", "11", "12"]
    assert campaign.rank(user, ids, filter=arn).scored_item_ids.__len__() == 3
    campaign.put_events(user, [{"itemId": "11", "eventType": "Purchase", "sentAt": 1.7e9},
                               {"itemId": "12", "eventType": "click", "sentAt": 1.7e9 + 1}])
    r = campaign.rank(user, ids, filter=arn)
    assert sorted(r.scored_item_ids) == ["10", "12"]
    star = campaign.create_filter("any", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")')
    assert campaign.rank(user, ids, filter=star).scored_item_ids == ["10"]


def test_put_events_validates_everything_first(campaign):
    with pytest.raises(rankcore.InvalidInputException, match="event 1"):
        campaign.put_events("u", [{"itemId": "1", "eventType": "click", "sentAt": 1.0},
                                  {"itemId": "2", "eventType": "", "sentAt": 1.0}])
    with pytest.raises(rankcore.InvalidInputException):
        campaign.put_events("u", [])
    with pytest.raises(rankcore.InvalidInputException):
        campaign.put_events("u", {"itemId": "1"})
    with pytest.raises(rankcore.InvalidInputException, match="sentAt"):
        campaign.put_events("u", [{"itemId": "1", "eventType": "click", "sentAt": "yesterday"}])
    assert campaign.data.recent_interactions("u")[0].size == 0
    campaign.put_events("u", [{"itemId": "1", "eventType": "CLICK",
                               "sentAt": datetime.datetime(2026, 1, 1)}])
    rows, types = campaign.data.recent_interactions("u")
    assert types == ["click"] and rows.tolist() == [1]


def test_put_events_is_thread_safe_while_ranking(campaign):
    arn = campaign.create_filter("seen", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")')
    ids = [str(i) for i in range(100)]
    errors = []
    stop = threading.Event()

    def ranker():
        try:
            while not stop.is_set():
                r = campaign.rank("hot-user", ids, filter=arn)
                assert abs(float(np.sum(r.scores, dtype=np.float64)) - 1) < 1e-5 or len(r.scores) == 0
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ranker) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(100):
        campaign.put_events("hot-user", [{"itemId": str(i), "eventType": "view", "sentAt": float(i)}])
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert campaign.rank("hot-user", ids, filter=arn).scored_item_ids == []


def test_client_with_filter_arn_and_values(campaign, model):
    arn = campaign.create_filter("genre", "INCLUDE ItemID WHERE Items.GENRE IN ($GENRES)")
    client = rankcore.Client([campaign])
    resp = client.get_personalized_ranking(
        campaignArn=campaign.arn, userId="12", inputList=[str(i) for i in range(40)],
        context={"DEVICE": "mobile phone"}, filterArn=arn,
        filterValues={"GENRES": '"Comedy","Drama"'})
    ids = [e["itemId"] for e in resp["personalizedRanking"]]
    assert ids and all(genres(model, i) & {"Comedy", "Drama"} for i in ids)
    assert abs(sum(e["score"] for e in resp["personalizedRanking"]) - 1) < 1e-5
    with pytest.raises(client.exceptions.InvalidInputException, match="GENRES"):
        client.get_personalized_ranking(campaignArn=campaign.arn, userId="12", inputList=["3"], filterArn=arn)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_personalized_ranking(campaignArn=campaign.arn, userId="12", inputList=["3"],
                                        filterArn=campaign.filter_arn("missing"))


def test_rank_batch_applies_filters(campaign):
    arn = campaign.create_filter("cheap", "INCLUDE ItemID WHERE Items.PRICE <= $PRICE")
    ids = [str(i) for i in range(50)]
    reqs = [{"userId": "1", "inputList": ids, "filterArn": arn, "filterValues": {"PRICE": "20"}},
            ("2", ids)]
    out = campaign.rank_batch(reqs)
    one = campaign.rank("1", ids, filter=arn, filter_values={"PRICE": "20"})
    assert out[0].scored_item_ids == one.scored_item_ids
    np.testing.assert_array_equal(out[0].scores, one.scores)
    assert len(out[1].scored_item_ids) == 50


def test_huge_filter_value_is_invalid_input(campaign):
    """Issue 11, item 8: the Python Campaign bounds filter values as the server does."""
    arn = campaign.create_filter("g", "INCLUDE ItemID WHERE Items.GENRE IN ($G)")
    huge = ",".join(['"Comedy"'] * 200_000)
    with pytest.raises(rankcore.InvalidInputException, match="at most 1000"):
        campaign.rank("1", ["1", "2"], filter=arn, filter_values={"G": huge})
