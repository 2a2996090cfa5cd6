"""Campaign.rank / rank_batch: GetPersonalizedRanking behaviour as docs/personalize.md specifies it.

Scores are compared with a float64 NumPy softmax over the same (deduplicated, filtered) rows with
``atol=1e-6`` (float32 kernels); "unchanged" properties (duplicates, unknown context values) are
compared with the same tolerance since they may reach the kernel in a different candidate order.
Out of scope: the kernel's own numerics (tests/test_core.py) and request limits (test_client.py).
"""
import re
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rankcore
from rankcore import Campaign, InvalidInputException, ResourceNotFoundException
from rankcore.core import native
from rankcore.personalize.candidates import all_known_distinct_py
from rankcore.datasets import synthetic

ATOL = 1e-6
RID_RE = re.compile(r"RID-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")

MODEL = synthetic(50, 300, 16, seed=7, item_bias=True)
CAMPAIGN = Campaign(MODEL, name="tests")


def expected_scores(model, user_vec, ids):
    """{item_id: score} over the distinct known IDs (float64 reference)."""
    known = [i for i in dict.fromkeys(ids) if i in model.item_ids]
    if not known:
        return {}
    rows = model.item_rows(known)
    logits = np.asarray(model.item_table.embeddings, np.float64)[rows] @ np.asarray(user_vec, np.float64)
    if model.item_bias is not None:
        logits += model.item_bias[rows]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return dict(zip(known, p.tolist()))


def check_result(result, model, user_vec, ids):
    exp = expected_scores(model, user_vec, ids)
    scored = result.scored_item_ids
    assert sorted(scored) == sorted(exp)
    np.testing.assert_allclose(result.scores, [exp[i] for i in scored], atol=ATOL)
    assert np.all(np.diff(result.scores) <= 0)
    unknown = [i for i in dict.fromkeys(ids) if i not in model.item_ids]
    assert result.unknown_item_ids == unknown
    assert result.item_ids == scored + unknown
    assert RID_RE.match(result.recommendation_id)


ids_strategy = st.lists(st.one_of(st.integers(0, 299).map(str), st.sampled_from(["x", "y", "zz", "é"])),
                        max_size=40)


@pytest.fixture(params=rankcore.available_backends())
def campaign(request):
    return Campaign(MODEL, name="tests", backend=request.param)


def test_basic_rank(campaign):
    ids = ["5", "17", "nope", "42", "5", "nope", "299"]
    r = campaign.rank("3", ids)
    check_result(r, MODEL, MODEL.user_embeddings[3], ids)
    assert r.scores.dtype == np.float32 and abs(float(r.scores.sum()) - 1) < 1e-5
    assert len(r) == 5 and list(r)[-1] == ("nope", None)
    assert r.item_rows.tolist() == MODEL.item_rows(r.scored_item_ids).tolist()
    assert [ids[p] for p in r.positions.tolist()] == r.scored_item_ids


@settings(max_examples=40, deadline=None)
@given(ids=ids_strategy, user=st.one_of(st.integers(0, 49).map(str), st.just("stranger")))
def test_properties(ids, user):
    r = CAMPAIGN.rank(user, ids)
    vec = MODEL.user_vector(user)
    check_result(r, MODEL, vec, ids)
    if r.scores.size:
        assert abs(float(r.scores.sum(dtype=np.float64)) - 1) < 1e-5
    # unknown items last, in input order
    n = len(r.scored_item_ids)
    assert r.item_ids[n:] == [i for i in dict.fromkeys(ids) if i not in MODEL.item_ids]


@settings(max_examples=30, deadline=None)
@given(ids=ids_strategy, data=st.data())
def test_duplicates_never_change_scores(ids, data):
    dup = data.draw(st.lists(st.sampled_from(ids), max_size=20)) if ids else []
    noisy = list(ids)
    for item in dup:
        noisy.insert(data.draw(st.integers(noisy.index(item) + 1, len(noisy))), item)  # after the first
    a, b = CAMPAIGN.rank("7", ids), CAMPAIGN.rank("7", noisy)
    da = dict(zip(a.scored_item_ids, a.scores.tolist()))
    db = dict(zip(b.scored_item_ids, b.scores.tolist()))
    assert da.keys() == db.keys()
    for k in da:
        assert abs(da[k] - db[k]) <= ATOL
    assert a.unknown_item_ids == b.unknown_item_ids


@settings(max_examples=25, deadline=None)
@given(ids=ids_strategy, value=st.text(max_size=10).filter(lambda v: v not in ("mobile phone", "desktop", "tablet")),
       user=st.sampled_from(["0", "1", "stranger"]))
def test_unknown_context_value_equals_no_context(ids, value, user):
    a = CAMPAIGN.rank(user, ids)
    b = CAMPAIGN.rank(user, ids, context={"DEVICE": value})
    assert a.scored_item_ids == b.scored_item_ids
    np.testing.assert_array_equal(a.scores, b.scores)


def test_context_adds_vectors():
    ids = [str(i) for i in range(0, 300, 3)]
    r = CAMPAIGN.rank("4", ids, context={"DEVICE": "tablet"})
    ct = MODEL.context["DEVICE"]
    vec = MODEL.user_embeddings[4] + ct.vectors[ct.index.get("tablet")]
    check_result(r, MODEL, vec, ids)
    lower = CAMPAIGN.rank("4", ids, context={"device": "tablet"})  # field names are case-insensitive
    np.testing.assert_array_equal(lower.scores, r.scores)


def test_context_shifts_towards_planted_genre():
    m = synthetic(100, 2000, 32, seed=2)
    c = Campaign(m)
    genre = m.item_columns["GENRE"]
    target = np.array([genre.code_of("Comedy")], np.int32)  # "mobile phone" points at GENRES[0]
    ids = [str(i) for i in range(0, 2000, 4)]
    share = []
    for ctx in (None, {"DEVICE": "mobile phone"}):
        top = [c.rank(str(u), ids, context=ctx).item_rows[:20] for u in range(30)]
        share.append(np.mean([genre.any_in(t, target).mean() for t in top]))
    assert share[1] > share[0] + 0.2


def test_unknown_context_field_raises():
    with pytest.raises(InvalidInputException, match="LOCATION"):
        CAMPAIGN.rank("1", ["1"], context={"LOCATION": "home"})
    with pytest.raises(ValueError):  # a standard exception too
        CAMPAIGN.rank("1", ["1"], context={"LOCATION": "home"})
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank("1", ["1"], context={"DEVICE": 3})


def test_unknown_user_uses_cold_start_and_bias():
    ids = [str(i) for i in range(40)]
    r = CAMPAIGN.rank("never-seen", ids)
    check_result(r, MODEL, MODEL.cold_start, ids)
    assert MODEL.item_bias is not None


def test_empty_and_all_unknown():
    r = CAMPAIGN.rank("1", [])
    assert r.item_ids == [] and r.scores.size == 0 and len(r) == 0 and RID_RE.match(r.recommendation_id)
    assert r.to_response()["personalizedRanking"] == []
    r = CAMPAIGN.rank("1", ["x", "y", "x"])
    assert r.item_ids == ["x", "y"] and r.scores.size == 0


def test_ties_keep_input_order():
    emb = np.ones((5, 4), np.float32)
    m = rankcore.Model.from_arrays(["a", "b", "c", "d", "e"], emb, user_ids=["u"], user_embeddings=np.ones((1, 4)))
    r = Campaign(m).rank("u", ["d", "b", "e", "a"])
    assert r.scored_item_ids == ["d", "b", "e", "a"]
    np.testing.assert_allclose(r.scores, 0.25, atol=ATOL)


def test_recommendation_id_is_new_each_call():
    rids = {CAMPAIGN.rank("1", ["1", "2"]).recommendation_id for _ in range(20)}
    assert len(rids) == 20


def test_metadata_columns():
    ids = ["3", "1", "unknown"]
    r = CAMPAIGN.rank("2", ids, metadata_columns={"ITEMS": ["genre", "PRICE", "creation_timestamp"]})
    meta = r.metadata
    assert len(meta) == 2
    for item, m in zip(r.scored_item_ids, meta):
        row = MODEL.item_ids.index(item)
        assert m["genre"] == MODEL.item_columns["GENRE"].as_strings([row])[0]
        assert m["PRICE"] == MODEL.item_columns["PRICE"].as_strings([row])[0]
        assert isinstance(m["creation_timestamp"], str) and "." not in m["creation_timestamp"]
    resp = r.to_response()["personalizedRanking"]
    assert "metadata" in resp[0] and "metadata" not in resp[-1]
    assert CAMPAIGN.rank("2", ids, metadata_columns=["GENRE"]).metadata[0].keys() == {"GENRE"}
    assert CAMPAIGN.rank("2", ids).metadata is None


def test_metadata_omits_missing_values():
    m = rankcore.Model.from_arrays(["a", "b"], np.eye(2), item_metadata={"T": ["x", None]})
    r = Campaign(m).rank("u", ["a", "b"], metadata_columns=["T"])
    by_id = dict(zip(r.scored_item_ids, r.metadata))
    assert by_id == {"a": {"T": "x"}, "b": {}}


@pytest.mark.parametrize("cols", [{"ITEMS": ["NOPE"]}, ["GENRE", "nope"], {"USERS": ["AGE"]}, {"ITEMS": "GENRE"}])
def test_bad_metadata_columns(cols):
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank("1", ["1"], metadata_columns=cols)


class KeepEven:
    """A stand-in filter plan: keeps items whose row is even, records what it was given."""

    def __init__(self):
        self.calls = []

    def evaluate(self, data, user_id, item_rows, filter_values):
        self.calls.append((data, user_id, item_rows.copy(), filter_values))
        return item_rows % 2 == 0


def test_filter_plan_renormalises():
    plan = KeepEven()
    ids = [str(i) for i in range(20)] + ["unknown", "4"]
    r = CAMPAIGN.rank("5", ids, filter=plan, filter_values={"X": '"1"'})
    kept = [str(i) for i in range(0, 20, 2)]
    # row -1 stands for the unknown items: KeepEven drops it (-1 is odd), so they go too
    check_result(r, MODEL, MODEL.user_embeddings[5], kept)
    data, user, rows, values = plan.calls[0]
    assert data is CAMPAIGN.data and user == "5" and values == {"X": '"1"'}
    assert rows.tolist() == list(range(20)) + [-1]  # distinct known rows in input order, then -1


def test_filter_by_arn_and_callable():
    c = Campaign(MODEL, name="filtered")
    arn = "arn:aws:personalize:us-east-1:000000000000:filter/even"
    c.filters[arn] = KeepEven()
    a = c.rank("1", ["1", "2", "3", "4"], filter=arn)
    b = c.rank("1", ["1", "2", "3", "4"], filter=lambda d, u, rows, v: rows % 2 == 0)
    assert a.scored_item_ids == b.scored_item_ids and sorted(a.scored_item_ids) == ["2", "4"]
    with pytest.raises(ResourceNotFoundException):
        c.rank("1", ["1"], filter=arn + "x")
    with pytest.raises(LookupError):
        c.rank("1", ["1"], filter=arn + "x")
    with pytest.raises(ValueError, match="mask"):
        c.rank("1", ["1", "2"], filter=lambda d, u, rows, v: np.ones(5, bool))
    with pytest.raises(TypeError):
        c.rank("1", ["1"], filter=42)
    none_left = c.rank("1", ["1", "3", "zz"], filter=arn)
    assert none_left.item_ids == [] and none_left.scores.size == 0  # KeepEven drops row -1 too
    keep_unknown = c.rank("1", ["1", "3", "zz"], filter=lambda d, u, rows, v: rows < 0)
    assert keep_unknown.item_ids == ["zz"] and keep_unknown.scores.size == 0


def test_filter_sees_recent_interactions_with_overlay():
    c = Campaign(MODEL, name="overlay")
    rows, events = c.data.recent_interactions("0")
    stored_rows, stored_events = MODEL.recent_interactions("0")
    assert rows.tolist() == stored_rows.tolist() and events == stored_events
    c.data.record_interactions("0", [7, 8], ["Purchase", "click"], [9e9, 0.0])
    rows, events = c.data.recent_interactions("0")
    assert rows[-1] == 7 and events[-1] == "purchase"  # newest last
    assert rows[0] == 8 and events[0] == "click"  # oldest first
    assert len(rows) == len(stored_rows) + 2
    c.data.record_interactions("brand-new", [1], ["click"], [1.0])
    assert c.data.recent_interactions("brand-new")[0].tolist() == [1]
    # 100 most recent per event type survive the merge
    c.data.record_interactions("1", range(150), ["view"] * 150, range(150))
    rows, events = c.data.recent_interactions("1")
    view_rows = [r for r, e in zip(rows.tolist(), events) if e == "view"]
    assert view_rows == list(range(50, 150))


def test_record_interactions_is_thread_safe():
    c = Campaign(MODEL, name="threads")

    def work(k):
        for i in range(200):
            c.data.record_interactions("u", [i], [f"e{k}"], [float(i)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows, events = c.data.recent_interactions("u", limit=1000)
    assert len(rows) == 4 * 100  # each type keeps its 100 most recent, whatever the limit
    for k in range(4):
        assert [r for r, e in zip(rows.tolist(), events) if e == f"e{k}"] == list(range(100, 200))


#: rank_batch's camelCase request members -> rank's argument names (those the tests below use).
SNAKE_CASE = {"userId": "user_id", "inputList": "item_ids"}


def test_rank_batch_matches_rank(campaign):
    reqs = [("1", ["1", "2", "3", "x"]),
            {"user_id": "stranger", "item_ids": ("9", "9", "10")},
            {"userId": "2", "inputList": [], "context": {"DEVICE": "desktop"}},
            ("3", [str(i) for i in range(0, 300, 7)], {"DEVICE": "tablet"}),
            {"user_id": "4", "item_ids": ["5", "6", "7", "8"], "filter": KeepEven(),
             "metadata_columns": ["PRICE"]},
            ("5", ["x", "y"])]
    batch = campaign.rank_batch(reqs)
    assert len(batch) == len(reqs)
    for req, got in zip(reqs, batch):
        if isinstance(req, tuple):
            one = campaign.rank(req[0], req[1], context=req[2] if len(req) == 3 else None)
        else:
            p = {SNAKE_CASE.get(k, k): v for k, v in req.items()}
            one = campaign.rank(p.pop("user_id"), p.pop("item_ids"), **p)
        assert got.item_ids == one.item_ids
        np.testing.assert_allclose(got.scores, one.scores, atol=ATOL)
        assert got.metadata == one.metadata
    assert len({r.recommendation_id for r in batch}) == len(reqs)
    assert campaign.rank_batch([]) == []


def test_rank_many_with_contexts_and_filter_matches_rank():
    """rank_many keeps a failing request's error (and drops its items) where rank would raise,
    and ranks the others as rank does, with contexts and a filter."""
    lists = [["5", "x", "5", "6"], ["1", "2", "3", "4", "y"], ["7", "8"], ["9", "9", "10"]]
    users = ["1", "stranger", "2", "3"]
    contexts = [{"DEVICE": "phone"}, None, {"NOPE": "x"}, {"device": "tablet"}]
    values = [{}, {}, {}, {}]
    flat = [i for lst in lists for i in lst]
    bounds = np.cumsum([0] + [len(x) for x in lists])
    plan = KeepEven()
    order, scores, offsets, unknown, errors = CAMPAIGN.rank_many(
        users, flat, bounds, contexts=contexts, filter=plan, filter_values=values)
    assert list(errors) == [2] and isinstance(errors[2], InvalidInputException)
    assert offsets[3] == offsets[2] and 2 not in unknown
    for k in (0, 1, 3):
        r = CAMPAIGN.rank(users[k], lists[k], context=contexts[k], filter=plan)
        a, b = offsets[k], offsets[k + 1]
        assert [flat[p] for p in order[a:b]] == r.scored_item_ids
        np.testing.assert_allclose(scores[a:b], r.scores, atol=ATOL)
        assert unknown.get(k, []) == r.unknown_item_ids
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank(users[2], lists[2], context=contexts[2])


@pytest.mark.parametrize("bounds", [[0, 2, 3], [0, 2, 5, 7], [1, 2, 3, 6], [0, 4, 2, 6], [[0, 2, 3, 6]]])
def test_rank_many_refuses_bad_bounds(bounds):
    flat = ["1", "2", "3", "4", "5", "6"]
    with pytest.raises(ValueError, match="bounds"):
        CAMPAIGN.rank_many(["1", "2", "3"], flat, np.array(bounds))


def test_rank_batch_bad_requests():
    with pytest.raises(TypeError):
        CAMPAIGN.rank_batch(["1"])
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank_batch([{"user_id": "1", "items": []}])
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank_batch([{"user_id": "1"}])
    with pytest.raises(InvalidInputException):
        CAMPAIGN.rank_batch([("1", ["1"]), ("1", ["1"], {"NOPE": "x"})])


def test_type_errors():
    with pytest.raises(TypeError):
        CAMPAIGN.rank(12, ["1"])
    with pytest.raises(TypeError):
        CAMPAIGN.rank("1", ["1", 2])


def test_generators_and_numpy_inputs():
    r = CAMPAIGN.rank("1", (str(i) for i in range(5)))
    assert sorted(r.item_ids) == ["0", "1", "2", "3", "4"]


def test_campaign_arn_and_name():
    assert CAMPAIGN.arn == "arn:aws:personalize:us-east-1:000000000000:campaign/tests"
    c = Campaign(MODEL, name="movies-v2", region="eu-west-1", account="123456789012")
    assert c.arn == "arn:aws:personalize:eu-west-1:123456789012:campaign/movies-v2"
    assert Campaign(MODEL).arn.endswith(":campaign/rankcore")
    for bad in ("", "-x", "a b", "x" * 64, 5):
        with pytest.raises(ValueError):
            Campaign(MODEL, name=bad)


def test_loaded_model_serves_the_same(tmp_path):
    MODEL.save(tmp_path)
    c = Campaign(rankcore.load_model(tmp_path))
    ids = [str(i) for i in range(0, 300, 11)] + ["x"]
    a, b = c.rank("9", ids, context={"DEVICE": "desktop"}), CAMPAIGN.rank("9", ids, context={"DEVICE": "desktop"})
    assert a.item_ids == b.item_ids
    np.testing.assert_array_equal(a.scores, b.scores)


@given(st.lists(st.integers(-1, 40), max_size=60))
@settings(max_examples=200, deadline=None)
def test_distinct_check_native_matches_python(rows):
    """The shortcut of the de-duplication (native, and its Python twin) says True exactly when no
    row is -1 or repeated; both refuse anything but a C-contiguous int64 array."""
    r = np.array(rows, dtype=np.int64)
    want = bool((r >= 0).all() and len(np.unique(r)) == len(r))
    impls = [all_known_distinct_py] + ([native.core.all_known_distinct] if native.HAS_NATIVE else [])
    for impl in impls:
        assert impl(r) is want
        with pytest.raises(TypeError):
            impl(r.astype(np.int32))
        with pytest.raises(TypeError):
            impl(list(rows))
