"""GetRecommendations in process (``Campaign.recommend``, ``Client.get_recommendations``) against a
float64 NumPy oracle on small catalogs: scores are a softmax over the whole catalog, the top-K
order is exact (ties in catalog order), filters are applied before the top-K, promotions take
their slots at replayable positions, and the service limits hold.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankcore import Campaign, Client, Model, batch
from rankcore.batch import recommend_lines
from rankcore.errors import InvalidInputException, ResourceNotFoundException
from rankcore.personalize.recommend import promotion_positions, recommend_many

COLORS = ("red", "green", "blue", "black")


def make_model(n_items=60, dim=6, n_users=8, seed=0, integer=False, bias=True, context=False):
    rng = np.random.default_rng(seed)
    if integer:  # exact in float32: the kernel's logits equal the oracle's, ties included
        emb = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
        users = rng.integers(-2, 3, size=(n_users, dim)).astype(np.float32)
        b = rng.integers(-2, 3, size=n_items).astype(np.float32) if bias else None
    else:
        emb = rng.normal(size=(n_items, dim)).astype(np.float32)
        users = rng.normal(size=(n_users, dim)).astype(np.float32)
        b = rng.normal(size=n_items).astype(np.float32) if bias else None
    ctx = None
    if context:
        ctx = {"DEVICE": {"phone": rng.normal(size=dim).astype(np.float32),
                          "desktop": rng.normal(size=dim).astype(np.float32)}}
    colors = [COLORS[i] for i in rng.integers(0, len(COLORS), size=n_items)]
    return Model.from_arrays([f"i{j}" for j in range(n_items)], emb, item_bias=b,
                             user_ids=[f"u{j}" for j in range(n_users)], user_embeddings=users,
                             context=ctx, item_metadata={"COLOR": colors}), np.array(colors)


def oracle(model, query, k, allowed=None, exclude=()):
    """float64 reference: (rows, scores) of the best k allowed, not excluded rows."""
    emb = np.asarray(model.item_table.embeddings, dtype=np.float64)
    logits = emb @ np.asarray(query, dtype=np.float64)
    if model.item_bias is not None:
        logits += np.asarray(model.item_bias, dtype=np.float64)
    m = logits.max()
    lse = m + np.log(np.exp(logits - m).sum())
    ok = np.ones(model.n_items, dtype=bool) if allowed is None else allowed.copy()
    ok[list(exclude)] = False
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((idx, -logits[idx]))][:k]
    return order, np.exp(logits[order] - lse)


def rows_of(result):
    return np.array([int(i[1:]) for i in result.item_ids], dtype=np.int64)


@pytest.fixture(scope="module")
def setup():
    model, colors = make_model(context=True)
    campaign = Campaign(model, name="demo")
    arns = {"include": campaign.create_filter("inc", "INCLUDE ItemID WHERE Items.COLOR IN ($C)"),
            "exclude": campaign.create_filter("exc", "EXCLUDE ItemID WHERE Items.COLOR IN ($C)")}
    return model, colors, campaign, arns


# --------------------------------------------------------------------------- scores and order

@pytest.mark.parametrize("k", [1, 5, 25, 60, 100])
def test_user_recommendations_match_oracle(setup, k):
    model, _, campaign, _ = setup
    r = campaign.recommend("u3", k=k)
    want_rows, want_scores = oracle(model, model.user_vector("u3"), k)
    np.testing.assert_array_equal(r.item_rows, want_rows)
    np.testing.assert_allclose(r.scores, want_scores, rtol=0, atol=1e-6)
    assert r.item_ids == [f"i{j}" for j in want_rows]
    assert len(r) == min(k, model.n_items)
    if k >= model.n_items:  # the whole catalog: the scores are the full softmax
        assert abs(r.scores.sum() - 1) < 1e-6
    else:
        assert r.scores.sum() < 1


@pytest.mark.parametrize("seed", range(4))
def test_ties_in_catalog_order(seed):
    model, _ = make_model(n_items=80, dim=3, seed=seed, integer=True)
    campaign = Campaign(model)
    for user in ("u0", "u1", "nobody"):
        r = campaign.recommend(user, k=30)
        want_rows, want_scores = oracle(model, model.user_vector(user), 30)
        np.testing.assert_array_equal(r.item_rows, want_rows)
        np.testing.assert_allclose(r.scores, want_scores, rtol=0, atol=1e-6)
    logits = np.asarray(model.item_table.embeddings) @ model.user_vector("u0") + model.item_bias
    assert len(np.unique(logits)) < len(logits)  # the catalog really has ties


def test_unknown_user_gets_cold_start(setup):
    model, _, campaign, _ = setup
    r = campaign.recommend("never-seen", k=10)
    want_rows, want_scores = oracle(model, model.cold_start, 10)
    np.testing.assert_array_equal(r.item_rows, want_rows)
    np.testing.assert_allclose(r.scores, want_scores, atol=1e-6)


def test_context_moves_the_query(setup):
    model, _, campaign, _ = setup
    ctx = {"DEVICE": "phone"}
    r = campaign.recommend("u1", k=10, context=ctx)
    q = model.user_vector("u1").astype(np.float64) + model.context["DEVICE"].vectors[
        model.context["DEVICE"].index.get("phone")]
    want_rows, want_scores = oracle(model, q, 10)
    np.testing.assert_array_equal(r.item_rows, want_rows)
    np.testing.assert_allclose(r.scores, want_scores, atol=1e-6)
    with pytest.raises(InvalidInputException, match="WEATHER"):
        campaign.recommend("u1", context={"WEATHER": "rain"})


def test_related_items(setup):
    model, _, campaign, _ = setup
    r = campaign.recommend(item_id="i7", k=15)
    q = np.asarray(model.item_table.embeddings)[7]
    want_rows, want_scores = oracle(model, q, 15, exclude=[7])
    np.testing.assert_array_equal(r.item_rows, want_rows)
    np.testing.assert_allclose(r.scores, want_scores, atol=1e-6)
    assert "i7" not in campaign.recommend(item_id="i7", k=model.n_items).item_ids
    assert len(campaign.recommend(item_id="i7", k=model.n_items)) == model.n_items - 1


def test_related_items_errors(setup):
    _, _, campaign, _ = setup
    with pytest.raises(InvalidInputException, match="not in the model"):
        campaign.recommend(item_id="no-such-item")
    with pytest.raises(InvalidInputException, match="context"):
        campaign.recommend(item_id="i1", context={"DEVICE": "phone"})
    with pytest.raises(InvalidInputException, match="userId or an itemId"):
        campaign.recommend()
    with pytest.raises(TypeError):
        campaign.recommend(item_id=5)
    with pytest.raises(ValueError, match="k must be"):
        campaign.recommend("u1", k=0)
    with pytest.raises(InvalidInputException, match="engine"):
        campaign.recommend("u1", engine="annoy")
    with pytest.raises(InvalidInputException, match="no ANN index"):
        campaign.recommend("u1", engine="faiss")


def test_engines_exact_and_auto_agree(setup):
    _, _, campaign, _ = setup
    a = campaign.recommend("u2", k=20, engine="exact")
    b = campaign.recommend("u2", k=20, engine="auto")
    np.testing.assert_array_equal(a.item_rows, b.item_rows)
    np.testing.assert_array_equal(a.scores, b.scores)


# --------------------------------------------------------------------------- filters

@pytest.mark.parametrize("kind", ["include", "exclude"])
@pytest.mark.parametrize("values", ['"red"', '"red","blue"', '"none"'])
def test_filters_before_topk(setup, kind, values):
    model, colors, campaign, arns = setup
    chosen = [v.strip('"') for v in values.split(",")]
    mask = np.isin(colors, chosen)
    allowed = mask if kind == "include" else ~mask
    r = campaign.recommend("u4", k=10, filter=arns[kind], filter_values={"C": values})
    want_rows, want_scores = oracle(model, model.user_vector("u4"), 10, allowed=allowed)
    np.testing.assert_array_equal(r.item_rows, want_rows)
    np.testing.assert_allclose(r.scores, want_scores, atol=1e-6)  # normaliser: whole catalog
    assert len(r) == min(10, int(allowed.sum()))


def test_filter_errors(setup):
    _, _, campaign, arns = setup
    with pytest.raises(InvalidInputException, match=r"\$C"):
        campaign.recommend("u1", filter=arns["include"])
    with pytest.raises(ResourceNotFoundException):
        campaign.recommend("u1", filter=arns["include"].replace("inc", "nope"))


# --------------------------------------------------------------------------- promotions

def _promo(arn, pct, values='"red"', name="sale"):
    return [{"name": name, "percentPromotedItems": pct, "filterArn": arn, "filterValues": {"C": values}}]


@pytest.mark.parametrize("k,pct", [(10, 20), (10, 25), (7, 100), (1, 1), (25, 50)])
def test_promotions_against_oracle(setup, k, pct):
    model, colors, campaign, arns = setup
    r = campaign.recommend("u5", k=k, filter=arns["exclude"], filter_values={"C": '"green"'},
                           promotions=_promo(arns["include"], pct))
    q = model.user_vector("u5")
    n_promo = math.ceil(k * pct / 100)
    p_rows, p_scores = oracle(model, q, n_promo, allowed=colors == "red")
    r_rows, r_scores = oracle(model, q, k - len(p_rows), allowed=colors != "green", exclude=p_rows)
    is_promo = np.array([name == "sale" for name in r.promotion_names])
    assert is_promo.sum() == len(p_rows)
    np.testing.assert_array_equal(r.item_rows[is_promo], p_rows)
    np.testing.assert_array_equal(r.item_rows[~is_promo], r_rows)
    np.testing.assert_allclose(r.scores[is_promo], p_scores, atol=1e-6)
    np.testing.assert_allclose(r.scores[~is_promo], r_scores, atol=1e-6)
    # positions are replayable from the recommendation ID
    want_at = promotion_positions(r.recommendation_id, len(r), len(p_rows))
    np.testing.assert_array_equal(np.flatnonzero(is_promo), want_at)
    entries = r.to_response()["itemList"]
    assert [e.get("promotionName") for e in entries] == r.promotion_names
    assert all(set(e) <= {"itemId", "score", "promotionName"} for e in entries)


def test_promotion_with_too_few_qualifying(setup):
    _, colors, campaign, arns = setup
    r = campaign.recommend("u1", k=10, promotions=_promo(arns["include"], 50, '"none"'))
    assert len(r) == 10 and r.promotion_names == [None] * 10  # regular items fill the list
    # the promotion's slots are filled as far as red items go; the rest is what the filter keeps
    n_black = int((colors == "black").sum())
    r = campaign.recommend("u1", k=n_black + 20, filter=arns["include"], filter_values={"C": '"black"'},
                           promotions=_promo(arns["include"], 50))
    n_promo = min(math.ceil((n_black + 20) * 50 / 100), int((colors == "red").sum()))
    assert r.promotion_names.count("sale") == n_promo
    assert len(r) == n_promo + n_black


def test_promotion_positions_are_replayable_and_uniform():
    a = promotion_positions("RID-x", 10, 3)
    np.testing.assert_array_equal(a, promotion_positions("RID-x", 10, 3))
    assert a.dtype == np.int64 and len(set(a.tolist())) == 3 and list(a) == sorted(a)
    counts = np.zeros(10)
    for i in range(2000):
        counts[promotion_positions(f"RID-{i}", 10, 2)] += 1
    assert counts.min() > 300  # every position is drawn (expected 400 each)
    with pytest.raises(ValueError):
        promotion_positions("RID-x", 3, 4)


@pytest.mark.parametrize("bad,match", [
    ([{"name": "a"} for _ in range(2)], "at most 1"),
    ([{"name": "", "percentPromotedItems": 10, "filterArn": "x"}], "name"),
    ([{"name": "a", "percentPromotedItems": 0, "filterArn": "x"}], "percentPromotedItems"),
    ([{"name": "a", "percentPromotedItems": True, "filterArn": "x"}], "percentPromotedItems"),
    ([{"name": "a", "percentPromotedItems": 10}], "filterArn"),
    ([{"name": "a", "percentPromotedItems": 10, "filterArn": "x", "other": 1}], "unknown"),
    (["sale"], "mapping"),
    ("sale", "not str"),
])
def test_promotion_errors(setup, bad, match):
    _, _, campaign, _ = setup
    with pytest.raises((InvalidInputException, TypeError), match=match):
        campaign.recommend("u1", promotions=bad)


# --------------------------------------------------------------------------- properties

@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 70), pct=st.integers(1, 100), user=st.sampled_from(["u0", "u6", "x"]),
       keep=st.sets(st.sampled_from(COLORS), max_size=4), promo=st.sets(st.sampled_from(COLORS), max_size=4),
       item=st.booleans(), use_promo=st.booleans())
def test_properties(setup, k, pct, user, keep, promo, item, use_promo):
    model, colors, campaign, arns = setup
    values = ",".join(f'"{c}"' for c in sorted(keep)) or '"none"'
    pvalues = ",".join(f'"{c}"' for c in sorted(promo)) or '"none"'
    kwargs = dict(filter=arns["include"], filter_values={"C": values})
    if use_promo:
        kwargs["promotions"] = _promo(arns["include"], pct, pvalues)
    if item:
        r = campaign.recommend(user if user != "x" else None, item_id="i3", k=k, **kwargs)
    else:
        r = campaign.recommend(user, k=k, **kwargs)
    rows = r.item_rows
    names = np.array(r.promotion_names, dtype=object)
    is_promo = names == "sale"
    regular_ok = np.isin(colors, sorted(keep))
    promo_ok = np.isin(colors, sorted(promo))
    exclude = {3} if item else set()
    assert len(set(rows.tolist())) == len(rows)  # no duplicates
    assert not exclude & set(rows.tolist())
    assert regular_ok[rows[~is_promo]].all()  # the request's filter never leaks
    assert promo_ok[rows[is_promo]].all()  # nor the promotion's
    n_slots = math.ceil(k * pct / 100) if use_promo else 0
    n_promo_ok = int(np.delete(promo_ok, list(exclude)).sum())
    assert is_promo.sum() == min(n_slots, n_promo_ok)
    others = regular_ok.copy()
    others[list(exclude)] = False
    others[rows[is_promo]] = False
    assert len(rows) == is_promo.sum() + min(k - is_promo.sum(), int(others.sum()))  # numResults
    assert len(rows) <= k
    scores = r.scores
    assert (np.diff(scores[~is_promo]) <= 0).all() and (np.diff(scores[is_promo]) <= 0).all()
    assert np.isfinite(scores).all() and (scores > 0).all()


# --------------------------------------------------------------------------- batch entry point

def test_recommend_many_matches_recommend(setup):
    model, _, campaign, arns = setup
    users = ["u0", "u1", None, "x", "u2", 5]
    items = [None, None, "i4", None, "nope", None]
    fvs = [{"C": '"red"'}, {"C": '"blue","green"'}, {"C": '"black"'}, {"C": '"red"'}, {"C": '"red"'},
           {"C": '"red"'}]
    rows, scores, counts, errors = recommend_many(campaign, users, items, 7, filter=arns["include"],
                                                  filter_values=fvs)
    assert sorted(errors) == [4, 5]
    assert isinstance(errors[4], InvalidInputException) and isinstance(errors[5], TypeError)
    for i in (0, 1, 2, 3):
        want = campaign.recommend(users[i], items[i], 7, filter=arns["include"], filter_values=fvs[i])
        c = int(counts[i])
        np.testing.assert_array_equal(rows[i, :c], want.item_rows)
        # same rows and logits; the normaliser of a batch may differ from a single call's by float32
        # rounding of its running max (topk.h, numerical policy)
        np.testing.assert_allclose(scores[i, :c], want.scores, rtol=1e-7, atol=0)
    assert counts[4] == counts[5] == 0


# --------------------------------------------------------------------------- Client

@pytest.fixture(scope="module")
def client(setup):
    return Client([setup[2]])


def test_client_response_shape(setup, client):
    model, _, campaign, arns = setup
    resp = client.get_recommendations(campaignArn=campaign.arn, userId="u1")
    assert len(resp["itemList"]) == 25 and resp["recommendationId"].startswith("RID-")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    want_rows, want_scores = oracle(model, model.user_vector("u1"), 25)
    assert [e["itemId"] for e in resp["itemList"]] == [f"i{j}" for j in want_rows]
    np.testing.assert_allclose([e["score"] for e in resp["itemList"]], want_scores, atol=1e-6)
    resp = client.get_recommendations(campaignArn=campaign.arn, itemId="i2", numResults=3,
                                      metadataColumns={"ITEMS": ["COLOR"]})
    assert [set(e) for e in resp["itemList"]] == [{"itemId", "score", "metadata"}] * 3
    assert all(e["metadata"]["COLOR"] in COLORS for e in resp["itemList"])


@pytest.mark.parametrize("params,match", [
    (dict(userId="u1", numResults=501), "less than or equal to 500"),
    (dict(userId="u1", numResults=51, metadataColumns={"ITEMS": ["COLOR"]}), "less than or equal to 50"),
    (dict(userId="u1", numResults=0), "greater than or equal to 1"),
    (dict(userId="u1", numResults="5"), "Invalid type for parameter numResults"),
    (dict(userId="u1", recommenderArn="arn:aws:personalize:us-east-1:0:recommender/r"), "recommenderArn"),
    (dict(), "userId"),
    (dict(userId="u" * 257), "userId"),
    (dict(itemId="i" * 257), "itemId"),
    (dict(itemId="nope"), "not in the model"),
    (dict(userId="u1", inputList=["i1"]), "Unknown parameter"),
    (dict(userId="u1", context={"a b": "x"}), "context.key"),
    (dict(userId="u1", promotions=[{"name": "a", "percentPromotedItems": 101,
                                    "filterArn": "arn:aws:personalize:us-east-1:0:filter/f"}]),
     "percentPromotedItems"),
    (dict(userId="u1", promotions=[{"name": "a b", "percentPromotedItems": 5, "filterArn": "bad"}]),
     "2 validation errors"),
    (dict(userId="u1", promotions=[{}, {}]), "promotions"),
    (dict(userId="u1", promotions={"name": "a"}), "Invalid type for parameter promotions"),
    (dict(userId="u1", filterValues={"C": 1}), "Invalid type"),
])
def test_client_limits(setup, client, params, match):
    campaign = setup[2]
    with pytest.raises(client.exceptions.InvalidInputException, match=match) as info:
        client.get_recommendations(campaignArn=campaign.arn, **params)
    assert isinstance(info.value, InvalidInputException)
    assert info.value.operation_name == "GetRecommendations"


def test_client_not_found(setup, client):
    campaign, arns = setup[2], setup[3]
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="campaign/nope"):
        client.get_recommendations(campaignArn=campaign.arn.replace("demo", "nope"), userId="u1")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="filter/zzz"):
        client.get_recommendations(campaignArn=campaign.arn, userId="u1",
                                   promotions=[{"name": "a", "percentPromotedItems": 5,
                                                "filterArn": arns["include"].replace("inc", "zzz")}])


def test_client_json_variant(setup, client):
    orjson = pytest.importorskip("orjson")
    campaign = setup[2]
    body, rid = client.get_recommendations_json({"campaignArn": campaign.arn, "userId": "u3",
                                                 "numResults": 4})
    got = orjson.loads(body)
    want = client.get_recommendations(campaignArn=campaign.arn, userId="u3", numResults=4)
    assert got["itemList"] == want["itemList"] and rid and "ResponseMetadata" not in got


# --------------------------------------------------------------------------- batch jobs

def _batch_lines(n, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        kind = rng.integers(0, 6)
        if kind == 0:
            lines.append({"userId": f"u{rng.integers(0, 10)}", "numResults": int(rng.integers(1, 30))})
        elif kind == 1:
            lines.append({"itemId": f"i{rng.integers(0, 60)}", "filterValues": {"C": '"red"'}})
        elif kind == 2:
            lines.append({"userId": "u1", "context": {"DEVICE": "phone"}, "filterValues": {"C": '"blue"'}})
        elif kind == 3:
            lines.append({"itemId": "nope"} if i % 2 else {"userId": 3})
        else:
            lines.append({"userId": f"u{i}", "extra": [1, 2]})
    return [json.dumps(x) for x in lines]


def test_batch_lines_match_recommend(setup):
    model, _, campaign, arns = setup
    plan = campaign.filters[arns["exclude"]]
    lines = _batch_lines(120) + ["not json", ""]
    out = recommend_lines(campaign, lines, filter=plan, num_results=5, chunk_size=16)
    assert len(out) == len(lines)
    for raw, got in zip(lines, out):
        got = json.loads(got)
        if raw in ("not json", ""):
            assert got["output"] is None and got["error"]
            continue
        obj = json.loads(raw)
        assert got["input"] == obj
        try:
            want = campaign.recommend(obj.get("userId"), obj.get("itemId"), obj.get("numResults", 5),
                                      context=obj.get("context"), filter=plan,
                                      filter_values=obj.get("filterValues"))
        except (ValueError, TypeError) as exc:
            assert got["output"] is None and got["error"]
            if isinstance(exc, InvalidInputException):  # a line the library refuses: its message
                assert got["error"] == exc.message
            continue
        assert got["error"] is None
        assert got["output"]["recommendedItems"] == want.item_ids
        assert got["output"]["scores"] == np.round(want.scores, 7).tolist()


def test_batch_job_local_and_dask_identical(tmp_path, setup):
    model, _, _, _ = setup
    model_dir = tmp_path / "model"
    model.save(model_dir)
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(_batch_lines(300, seed=3)) + "\n")
    expr = "INCLUDE ItemID WHERE Items.COLOR IN ($C)"
    local = tmp_path / "local.jsonl"
    s = batch.run(model_dir, inp, local, job="recommendations", num_results=7, quiet=True,
                  filter_expression=expr, chunk_size=32)
    assert s.lines == 300 and 0 < s.failed < 300
    assert len(local.read_bytes().splitlines()) == 300
    with pytest.raises(batch.BatchError, match="job"):
        batch.run(model_dir, inp, tmp_path / "x.jsonl", job="ranks", quiet=True)
    with pytest.raises(batch.BatchError, match="num_results"):
        batch.run(model_dir, inp, tmp_path / "x.jsonl", job="recommendations", num_results=0,
                  quiet=True)
    # the same job through the rankcore batch command
    args = batch.configure_parser(argparse.ArgumentParser()).parse_args(
        ["--model", str(model_dir), "--input", str(inp), "--output", str(tmp_path / "cli.jsonl"),
         "--job", "recommendations", "--num-results", "7", "--filter-expression", expr, "--quiet"])
    assert batch.main(args) == 1  # some lines fail on purpose
    assert (tmp_path / "cli.jsonl").read_bytes() == local.read_bytes()


@pytest.mark.slow
def test_batch_job_dask_identical(tmp_path, setup):
    distributed = pytest.importorskip("distributed")
    model, _, _, _ = setup
    model_dir = tmp_path / "model"
    model.save(model_dir)
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(_batch_lines(300, seed=4)) + "\n")
    local = tmp_path / "local.jsonl"
    batch.run(model_dir, inp, local, job="recommendations", num_results=6, quiet=True)
    cluster = batch.local_cluster(processes=False)
    client = distributed.Client(cluster)
    try:
        dist = tmp_path / "dist.jsonl"
        s = batch.run(model_dir, inp, dist, scheduler=client, partition_bytes=2000, chunk_size=16,
                      job="recommendations", num_results=6, quiet=True)
        assert s.partitions > 3 and s.lines == 300
        assert dist.read_bytes() == local.read_bytes()
    finally:
        client.close()
        cluster.close()
