"""GetRecommendations through the faiss engine: the ANN index saved beside a model is used.

The exact engine is the reference: the faiss engine must return (nearly) the same top items, with
exact logits for the rows it returns, and never an item a filter removes; ``auto`` picks faiss
only from ``EXACT_BELOW`` items on; ``faiss`` without an index is ``InvalidInputException``.
"""
import numpy as np
import pytest

import rankcore
from rankcore.personalize import recommend as rec

faiss = pytest.importorskip("faiss")
from rankcore.model.ann import AnnIndex  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ann") / "m"
    model = rankcore.datasets.synthetic(n_users=50, n_items=4000, dim=16, seed=5, item_bias=True)
    model.save(path)
    AnnIndex.build(rankcore.load_model(path), m=16, ef_construction=80, ef_search=200).save(path)
    return path


@pytest.fixture(scope="module")
def campaign(model_dir):
    return rankcore.Campaign(rankcore.load_model(model_dir), name="ann")


def test_faiss_engine_agrees_with_exact(campaign):
    overlaps = []
    for user in map(str, range(20)):
        exact = campaign.recommend(user, k=25, engine="exact")
        approx = campaign.recommend(user, k=25, engine="faiss")
        assert len(approx.item_ids) == 25 and len(set(approx.item_ids)) == 25
        overlaps.append(len(set(exact.item_ids) & set(approx.item_ids)) / 25)
        # the scores of the rows it returns are exact logits over an estimated normaliser
        assert np.all(np.diff(approx.scores) <= 1e-12)
    assert np.mean(overlaps) >= 0.9, overlaps


def test_faiss_engine_never_returns_filtered_items(campaign):
    arn = campaign.create_filter("comedy", 'INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")')
    genre = campaign.model.item_columns["GENRE"]
    res = campaign.recommend("3", k=40, filter=arn, engine="faiss")
    assert len(res.item_ids) == 40
    rows = campaign.model.item_rows(res.item_ids)
    assert all("Comedy" in genre.values_of(int(r)) for r in rows)
    related = campaign.recommend(item_id="7", k=10, engine="faiss")
    assert "7" not in related.item_ids


def test_auto_uses_faiss_only_from_the_crossover(campaign, monkeypatch):
    assert rec.resolve_engine(campaign, "auto") == "exact"  # 4,000 items < EXACT_BELOW
    monkeypatch.setattr(rec, "EXACT_BELOW", 1000)
    assert rec.resolve_engine(campaign, "auto") == "faiss"


def test_faiss_without_an_index_is_invalid_input():
    model = rankcore.datasets.synthetic(n_users=5, n_items=100, dim=8, seed=1)
    campaign = rankcore.Campaign(model)
    assert rec.resolve_engine(campaign, "auto") == "exact"
    with pytest.raises(rankcore.InvalidInputException, match="no ANN index"):
        campaign.recommend("1", k=5, engine="faiss")
