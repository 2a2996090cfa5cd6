"""Training and evaluation: rankcore beside the bare library and a per-user NumPy loop.

Group ``train``: ``rankcore.train.train`` (read CSV, fit, logit scale, save) on a synthetic
Personalize dataset of 1M interactions, beside the same ``implicit`` ALS fit alone on the
prepared matrix (target: at most 1.3x), and the CSV read beside ``pandas.read_csv``.
Group ``evaluate``: the top 25 of a 100k-item catalog for 10,000 held-out users, rankcore's
blocked product with ``argpartition`` beside a per-user loop (logits, full ``argsort``; target:
at least 10x). Sizes shrink with ``RANKCORE_BENCH_ITEMS`` (2,000,000 = full size).
Run: ``pytest benches/bench_train.py``; ``python benches/bench_train.py [train] [evaluate]``
prints the ratios.
"""
import os
import sys
import tempfile
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import BENCH_ITEMS  # noqa: E402  (also pins BLAS threads to 1)

pytest.importorskip("implicit")
import implicit.cpu.als  # noqa: E402,F401  (imported before timing, for both sides)
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from rankcore.datasets import read_interactions, synthetic_interactions  # noqa: E402
from rankcore.evaluation import catalog_top_k, evaluate  # noqa: E402
from rankcore.model import Model  # noqa: E402
from rankcore.train import train  # noqa: E402

SCALE = min(1.0, BENCH_ITEMS / 2_000_000)
INTERACTIONS = max(5_000, int(1_000_000 * SCALE))
EVAL_ITEMS = max(1_000, int(100_000 * SCALE))
EVAL_USERS = max(100, int(10_000 * SCALE))
FACTORS, ITERATIONS = 64, 15
_state: dict = {}


def dataset() -> dict:
    if "data" not in _state:
        tmp = tempfile.mkdtemp(prefix="rankcore-bench-train-")
        n_users = INTERACTIONS // 20
        _state["data"] = synthetic_interactions(tmp, n_users=n_users, n_items=max(100, n_users // 5),
                                                n_genres=20, interactions_per_user=20, seed=0)
        _state["tmp"] = tmp
    return _state["data"]


def implicit_alone(matrix):
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        algo = AlternatingLeastSquares(factors=FACTORS, iterations=ITERATIONS, random_state=0,
                                       num_threads=1)
        algo.fit(matrix, show_progress=False)
    return algo


def prepared_matrix(path):
    frame = read_interactions(path).frame
    u, _ = pd.factorize(frame["USER_ID"])
    i, _ = pd.factorize(frame["ITEM_ID"])
    m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)))
    m.sum_duplicates()
    return m


def rankcore_train(data, out):
    model = train(data["interactions"], data["items"], factors=FACTORS, iterations=ITERATIONS,
                  seed=0, num_threads=1, progress=False)
    model.save(out)
    return model


def eval_case():
    """A random 100k x 64 model and an interactions frame whose 10% held-out users number 10k."""
    if "eval" not in _state:
        rng = np.random.default_rng(1)
        items = (rng.standard_normal((EVAL_ITEMS, 64)) / 8).astype(np.float32)
        model = Model.from_arrays([f"i{k}" for k in range(EVAL_ITEMS)], items,
                                  training={"regularization": 0.01})
        n_users, per = EVAL_USERS * 10, 10
        frame = pd.DataFrame({"USER_ID": np.repeat(np.arange(n_users), per).astype(str),
                              "ITEM_ID": np.char.add("i", rng.integers(0, EVAL_ITEMS, n_users * per).astype(str)),
                              "TIMESTAMP": np.tile(np.arange(per), n_users)})
        users = (rng.standard_normal((EVAL_USERS, 64)) / 8).astype(np.float32)
        _state["eval"] = (model, frame, users, items)
    return _state["eval"]


def per_user_loop(users, items, k=25):
    out = np.empty((len(users), k), np.int64)
    for j, u in enumerate(users):
        out[j] = np.argsort(-(items @ u), kind="stable")[:k]
    return out


@pytest.mark.parametrize("impl", ["rankcore-train", "implicit-fit-alone"])
def test_train(benchmark, impl, tmp_path):
    data = dataset()
    benchmark.group = f"train {INTERACTIONS} interactions"
    if impl == "rankcore-train":
        model = benchmark.pedantic(rankcore_train, args=(data, str(tmp_path / "m")), rounds=1)
        assert model.training["counts"]["interactions"] >= INTERACTIONS * 0.9
    else:
        matrix = prepared_matrix(data["interactions"])
        algo = benchmark.pedantic(implicit_alone, args=(matrix,), rounds=1)
        assert algo.item_factors.shape[1] == FACTORS


@pytest.mark.parametrize("impl", ["rankcore-read_interactions", "pandas-read_csv"])
def test_read_csv(benchmark, impl):
    path = dataset()["interactions"]
    benchmark.group = f"read CSV {INTERACTIONS} rows"
    fn = read_interactions if impl.startswith("rankcore") else pd.read_csv
    result = benchmark.pedantic(fn, args=(path,), rounds=1)
    assert len(result) >= INTERACTIONS * 0.9


@pytest.mark.parametrize("impl", ["rankcore-catalog_top_k", "numpy-per-user-argsort"])
def test_evaluate_top_k(benchmark, impl):
    _, _, users, items = eval_case()
    benchmark.group = f"top 25 of {EVAL_ITEMS} items for {EVAL_USERS} users"
    fn = catalog_top_k if impl.startswith("rankcore") else per_user_loop
    out = benchmark.pedantic(fn, args=(users, items, 25), rounds=1)
    assert np.array_equal(out[:5], per_user_loop(users[:5], items))


def _timed(fn, *args, **kw):
    t = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - t, result


def main(parts=("train", "evaluate")) -> None:
    if "train" in parts:
        main_train()
    if "evaluate" in parts:
        main_evaluate()


def main_train() -> None:
    data = dataset()
    with tempfile.TemporaryDirectory() as out:
        t_train, _ = _timed(rankcore_train, data, out)
    matrix = prepared_matrix(data["interactions"])
    t_fit, _ = _timed(implicit_alone, matrix)
    t_read, ds = _timed(read_interactions, data["interactions"])
    t_pandas, _ = _timed(pd.read_csv, data["interactions"])
    print(f"train {INTERACTIONS} interactions ({len(ds)} rows, {FACTORS} factors, {ITERATIONS} "
          f"iterations, 1 thread): rankcore {t_train:.2f} s, implicit fit alone {t_fit:.2f} s, "
          f"ratio {t_train / t_fit:.2f}x (target <= 1.3x)")
    print(f"read CSV: rankcore {len(ds) / t_read:,.0f} rows/s, pandas.read_csv "
          f"{len(ds) / t_pandas:,.0f} rows/s")


def main_evaluate() -> None:
    model, frame, users, items = eval_case()
    t_ours, ours = _timed(catalog_top_k, users, items, 25)
    t_loop, loop = _timed(per_user_loop, users, items)
    t_eval, result = _timed(evaluate, model, frame, seed=0, progress=False)
    print(f"top 25 of {EVAL_ITEMS} items for {EVAL_USERS} users: catalog_top_k {t_ours:.2f} s, "
          f"per-user argsort loop {t_loop:.2f} s, ratio {t_loop / t_ours:.1f}x (target >= 10x); "
          f"identical lists: {np.mean((ours == loop).all(axis=1)):.1%} (the rest differ where "
          "blocked and per-user float32 sums round near-equal logits apart)")
    print(f"whole evaluate() ({result['users']} held-out users: split, fold-in, top 25, metrics, "
          f"popularity): {t_eval:.2f} s, {t_loop / t_eval:.1f}x the loop's ranking step alone")


if __name__ == "__main__":
    main(sys.argv[1:] or ("train", "evaluate"))
