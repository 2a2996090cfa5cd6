"""Training, importing, fold-in and the logit scale: models from real data.

Small planted datasets keep this file fast; exact comparisons where the result must be
bit-identical (determinism, save/load), tolerances only against implicit's float32 solver.
"""
import argparse
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

import rankcore
from rankcore import Campaign, Model, load_model
from rankcore.datasets import read_interactions, synthetic_interactions
from rankcore.evaluation import evaluate
from rankcore.train import (fit_logit_scale, from_embeddings, from_implicit, from_lightfm, train,
                            with_logit_scale)
from rankcore.cli.training import cmd_eval, cmd_train, configure_eval_parser, configure_train_parser

implicit_als = pytest.importorskip("implicit.cpu.als")
implicit_bpr = pytest.importorskip("implicit.cpu.bpr")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthetic_interactions(tmp_path_factory.mktemp("syn"), n_users=600, n_items=150,
                                  n_genres=6, interactions_per_user=15, seed=4)


@pytest.fixture(scope="module")
def model(dataset):
    return train(dataset["interactions"], dataset["items"], dataset["users"], factors=16,
                 iterations=8, seed=1, progress=False)


def fitted_als(n_users=40, n_items=30, alpha=1.0):
    m = sp.random(n_users, n_items, density=0.2, format="csr", random_state=2, dtype=np.float32)
    m.data[:] = np.random.default_rng(0).integers(1, 4, len(m.data))
    with threadpool_limits(1, "blas"):
        algo = implicit_als.AlternatingLeastSquares(factors=6, iterations=4, regularization=0.3,
                                                    alpha=alpha, random_state=0, num_threads=1)
        algo.fit(m, show_progress=False)
    return algo, m


# ----------------------------------------------------------------------------- Model changes
def test_from_arrays_aligns_dataframe_by_index():
    ids = ["a", "b", "c"]
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    frame = pd.DataFrame(emb, index=ids).iloc[[2, 0, 1]]
    m = Model.from_arrays(ids, frame, user_ids=["u"], user_embeddings=pd.DataFrame([[1, 0]], index=["u"]))
    assert np.array_equal(m.item_table.data[:, :2], emb)
    with pytest.raises(ValueError, match="index is not the 3 IDs"):
        Model.from_arrays(ids, pd.DataFrame(emb))  # a RangeIndex is not the IDs
    with pytest.raises(ValueError, match="index is not"):
        Model.from_arrays(ids, pd.DataFrame(emb, index=["a", "b", "zz"]))


def test_from_arrays_integer_ids_become_strings():
    m = Model.from_arrays(np.array([10, 20, 30]), np.eye(3), user_ids=[7], user_embeddings=np.ones((1, 3)))
    assert list(m.item_ids) == ["10", "20", "30"] and list(m.user_ids) == ["7"]
    with pytest.raises(TypeError, match=r"str\(x\)"):
        Model.from_arrays([1.5, 2.5], np.eye(2))
    with pytest.raises(TypeError):
        Model.from_arrays([True, False], np.eye(2))


def test_interactions_without_event_type_and_training_round_trip(tmp_path):
    inter = pd.DataFrame({"USER_ID": ["u", "u"], "ITEM_ID": ["b", "a"], "TIMESTAMP": [2, 1]})
    m = Model.from_arrays(["a", "b"], np.eye(2), user_ids=["u"], user_embeddings=np.ones((1, 2)),
                          interactions=inter, training={"algorithm": "als", "regularization": 0.5})
    rows, events = m.recent_interactions("u")
    assert rows.tolist() == [0, 1] and events == ["", ""]
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.training == {"algorithm": "als", "regularization": 0.5}
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["training"] = [1]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(rankcore.ModelFormatError, match="training"):
        load_model(tmp_path / "m")


# ----------------------------------------------------------------------------- fold-in
@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_fold_in_matches_implicit_recalculate_user(alpha):
    algo, matrix = fitted_als(alpha=alpha)
    items = [f"i{j}" for j in range(matrix.shape[1])]
    m = from_implicit(algo, [f"u{j}" for j in range(matrix.shape[0])], items)
    assert m.training["regularization"] == 0.3 and m.training["alpha"] == alpha
    for u in (0, 5, 17):
        row = matrix[u]
        want = algo.recalculate_user(0, row)
        got = m.fold_in([items[j] for j in row.indices], row.data)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
        repeated = [items[j] for j, c in zip(row.indices, row.data) for _ in range(int(c))]
        np.testing.assert_allclose(m.fold_in(repeated + ["unknown"]), want, rtol=2e-4, atol=2e-5)
    assert np.array_equal(m.fold_in(["unknown"]), m.cold_start)
    scaled = with_logit_scale(m, 2.5)
    np.testing.assert_allclose(scaled.fold_in(items[:3]), 2.5 * m.fold_in(items[:3]), rtol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        m.fold_in(items[:2], [1.0, -1.0])
    with pytest.raises(ValueError, match="one value per item"):
        m.fold_in(items[:2], [1.0])
    with pytest.raises(TypeError):
        m.fold_in("i0")
    bare = Model.from_arrays(items, algo.item_factors)
    with pytest.raises(ValueError, match="regularization"):
        bare.fold_in(items[:2])


# ----------------------------------------------------------------------------- importers
def test_from_implicit_bpr_folds_bias_and_gpu_to_cpu():
    m = sp.random(30, 20, density=0.3, format="csr", random_state=3, dtype=np.float32)
    algo = implicit_bpr.BayesianPersonalizedRanking(factors=5, iterations=3, random_state=0, num_threads=1)
    algo.fit(m, show_progress=False)
    assert algo.item_factors.shape[1] == 6  # implicit keeps the bias as an extra factor

    class GpuLike:  # an implicit GPU model reaches the host only through to_cpu()
        def to_cpu(self):
            return algo

    for source in (algo, GpuLike()):
        model = from_implicit(source, [f"u{j}" for j in range(30)], [f"i{j}" for j in range(20)])
        assert model.dim == 5 and model.item_bias is not None and model.training["algorithm"] == "bpr"
        items = [f"i{j}" for j in range(20)]
        r = rankcore.rank(model.user_embeddings[4], model.item_table, np.arange(20))
        want = algo.user_factors[4] @ algo.item_factors.T
        assert r.items.tolist() == np.lexsort((np.arange(20), -want)).tolist()
        assert len(items) == model.n_items
    with pytest.raises(ValueError, match="30 users"):
        from_implicit(algo, ["u"], [f"i{j}" for j in range(20)])


def test_from_embeddings_and_lightfm(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((4, 3)).astype(np.float32)
    np.savez(tmp_path / "items.npz", ids=np.array(["a", "b", "c", "d"]), embeddings=emb,
             bias=np.arange(4, dtype=np.float32))
    pd.DataFrame({"ID": ["b", "a", "d", "c"], "vec": [list(emb[i]) for i in (1, 0, 3, 2)]}).to_parquet(
        tmp_path / "items.parquet")
    pd.DataFrame({"ID": ["u1"], "f0": [1.0], "f1": [0.0], "f2": [2.0]}).to_parquet(tmp_path / "users.parquet")
    a = from_embeddings(tmp_path / "items.npz")
    b = from_embeddings(tmp_path / "items.parquet", tmp_path / "users.parquet", logit_scale=2.0)
    assert np.array_equal(np.asarray(a.item_bias), np.arange(4, dtype=np.float32))
    for i in "abcd":
        assert np.array_equal(a.item_table.data[a.item_rows([i])[0], :3], b.item_table.data[b.item_rows([i])[0], :3])
    assert np.array_equal(b.user_embeddings, [[2.0, 0.0, 4.0]]) and b.training["logit_scale"] == 2.0
    lf = from_lightfm(["a", "b"], np.array([0.5, -0.5]), emb[:2], ["u"], np.array([9.0]), emb[2:3])
    assert np.array_equal(np.asarray(lf.item_bias), np.array([0.5, -0.5], np.float32))


# ----------------------------------------------------------------------------- logit scale
def test_fit_logit_scale_recovers_a_planted_scale():
    rng = np.random.default_rng(7)
    users = rng.standard_normal((3000, 4)).astype(np.float32)
    items = rng.standard_normal((50, 4)).astype(np.float32)
    logits = users @ items.T
    p = np.exp(2.0 * logits - (2.0 * logits).max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(50, p=row) for row in p])
    assert fit_logit_scale(users, items, targets) == pytest.approx(2.0, rel=0.1)
    worst = np.argmin(logits, axis=1)  # held-out items below the catalog average: no evidence
    assert fit_logit_scale(users, items, worst) == 1.0


def test_with_logit_scale_scales_every_logit(model):
    scaled = with_logit_scale(model, 2 * model.training["logit_scale"])
    u = model.user_embeddings[0]
    rows = np.arange(model.n_items)
    a = rankcore.score(u, model.item_table, rows)
    b = rankcore.score(scaled.user_embeddings[0], scaled.item_table, rows)
    # doubling every logit squares the (unnormalised) softmax weights
    w = np.asarray(a.scores, np.float64) ** 2
    np.testing.assert_allclose(np.asarray(b.scores), w / w.sum(), rtol=2e-3, atol=1e-9)
    with pytest.raises(ValueError):
        with_logit_scale(model, 0)


# ----------------------------------------------------------------------------- training
def test_trained_model_round_trips_and_ranks(model, tmp_path):
    t = model.training
    assert t["algorithm"] == "als" and t["params"]["factors"] == 16 and t["logit_scale"] > 1
    assert t["counts"]["trained_on"] + t["counts"]["temperature_holdout"] == t["counts"]["interactions"]
    assert set(t["checksum"]) == {"Interactions", "Items", "Users"}
    assert set(model.item_columns) == {"GENRE", "PRICE", "CREATION_TIMESTAMP"}
    assert set(model.user_columns) == {"AGE", "MEMBERSHIP"}
    assert model.history.items.shape[0] == t["counts"]["interactions"]
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m", verify=True)
    assert loaded.training == json.loads(json.dumps(t))
    items = [f"i{k}" for k in range(0, 150, 7)]
    before = Campaign(model).rank("u3", items, metadata_columns={"ITEMS": ["GENRE"]})
    after = Campaign(loaded).rank("u3", items, metadata_columns={"ITEMS": ["GENRE"]})
    assert before.to_response()["personalizedRanking"] == after.to_response()["personalizedRanking"]
    top = after.to_response()["personalizedRanking"][0]
    assert top["score"] > 1 / len(items) and "genre" in {k.lower() for k in top["metadata"]}


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_training_is_deterministic(dataset, algorithm):
    kw = dict(algorithm=algorithm, factors=8, iterations=3, seed=11, progress=False)
    a = train(dataset["interactions"], **kw)
    b = train(dataset["interactions"], **kw)
    assert np.array_equal(a.item_table.data, b.item_table.data)
    assert np.array_equal(a.user_embeddings, b.user_embeddings)
    assert a.training == b.training
    if algorithm == "bpr":
        assert np.array_equal(np.asarray(a.item_bias), np.asarray(b.item_bias))
    c = train(dataset["interactions"], **dict(kw, seed=12))
    assert not np.array_equal(a.user_embeddings, c.user_embeddings)


def test_event_filters(dataset):
    m = train(dataset["interactions"], factors=4, iterations=1, event_type="WATCH", progress=False)
    frame = read_interactions(dataset["interactions"]).frame
    assert m.training["counts"]["trained_on"] + m.training["counts"]["temperature_holdout"] == \
        int((frame["EVENT_TYPE"] == "watch").sum())
    with pytest.raises(ValueError, match="no interaction left"):
        train(dataset["interactions"], event_type="nope", progress=False)
    with pytest.raises(ValueError, match="algorithm"):
        train(dataset["interactions"], algorithm="svd")


def test_als_beats_popularity(dataset, model):
    frame = read_interactions(dataset["interactions"]).frame
    result = evaluate(model, frame, seed=0)
    assert result["users"] == 60
    assert (result["model"]["normalized_discounted_cumulative_gain_at_10"]
            > result["popularity"]["normalized_discounted_cumulative_gain_at_10"])
    assert result["model"]["coverage"] > result["popularity"]["coverage"]


def test_cli_train_eval(dataset, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    args = configure_train_parser(parser).parse_args([
        "--interactions", dataset["interactions"], "--items", dataset["items"], "--out",
        str(tmp_path / "m"), "--factors", "8", "--iterations", "4", "--eval", "--json"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert set(result) == {"model", "popularity", "users"} and "inferred" in out.err
    assert load_model(tmp_path / "m").training["evaluation"] == result
    args = configure_eval_parser(argparse.ArgumentParser()).parse_args([
        "--model", str(tmp_path / "m"), "--interactions", dataset["interactions"]])
    assert cmd_eval(args) == 0
    table = capsys.readouterr().out
    assert "normalized_discounted_cumulative_gain_at_10" in table and "held-out users: 60" in table
    assert cmd_train is args.func.__globals__["cmd_train"]


def test_trained_model_served_to_boto3(model, tmp_path):
    """train -> save -> `rankcore serve` -> boto3 get_personalized_ranking, equal to in-process."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("starlette")
    from test_server import run_server  # the suite's server fixture helper (tests/ is on the path)

    model.save(tmp_path / "m")
    items = [f"i{k}" for k in range(0, 150, 11)] + ["not-an-item"]
    local = Campaign(load_model(tmp_path / "m"), name="trained")
    want = local.rank("u5", items).to_response()["personalizedRanking"]
    with run_server("--campaign", f"trained={tmp_path / 'm'}") as proc:
        client = boto3.client("personalize-runtime", endpoint_url=proc.url, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x")
        got = client.get_personalized_ranking(campaignArn=local.arn, userId="u5", inputList=items)
    assert got["personalizedRanking"] == want
    assert got["personalizedRanking"][-1] == {"itemId": "not-an-item"}
