"""A synthetic Personalize dataset with planted structure, for tests, the README and benchmarks.

``synthetic_interactions(path, ...)`` writes ``interactions.csv``, ``items.csv`` and
``users.csv`` (Personalize's schemas, header row, UTF-8; ``.csv.gz`` with ``compress=True``) into
the directory ``path``:

* items ``i0``, ``i1``, ... each have a primary genre (from ``model.synthetic.GENRES``) and, for
  a third of them, a second one: ``GENRE`` is ``"Comedy"`` or ``"Comedy|Drama"``; ``PRICE``
  (dollars) and ``CREATION_TIMESTAMP`` (epoch seconds); within a genre, popularity follows a
  Zipf-like law;
* users ``u0``, ``u1``, ... like one or two genres: ``taste`` of their interactions fall in them
  (drawn by popularity), the rest anywhere by global popularity; ``AGE`` and ``MEMBERSHIP``;
* interactions have increasing ``TIMESTAMP`` per user, ``EVENT_TYPE`` ``click`` (70%), ``watch``
  (20%), ``purchase`` (10%) and ``EVENT_VALUE`` in [0, 1].
"""
from __future__ import annotations

import os

import numpy as np

from ..model.synthetic import EVENT_TYPES, GENRES

__all__ = ["synthetic_interactions"]


def _zipf_weights(n: int, rng, a: float = 0.8) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.permutation(w)


def synthetic_interactions(path, n_users: int = 1000, n_items: int = 500, *, n_genres: int = 8,
                           interactions_per_user: int = 20, taste: float = 0.85, seed: int = 0,
                           compress: bool = False) -> dict:
    """Write the dataset into directory ``path``; return ``{"interactions": file, "items": file,
    "users": file}``. Each user has at least 3 interactions (Poisson around
    ``interactions_per_user``). Deterministic for a given ``seed``.
    """
    import pandas as pd  # optional extra (rankcore[train])

    if n_users < 1 or n_items < n_genres or not 1 <= n_genres <= len(GENRES):
        raise ValueError(f"need n_users >= 1, 1 <= n_genres <= {len(GENRES)} and n_items >= n_genres")
    if not 0.0 <= taste <= 1.0:
        raise ValueError(f"taste must be in [0, 1], got {taste}")
    rng = np.random.default_rng(seed)
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)

    genre = rng.integers(0, n_genres, n_items)
    second = np.where(rng.random(n_items) < 1 / 3, rng.integers(0, n_genres, n_items), -1)
    second[second == genre] = -1
    popularity = _zipf_weights(n_items, rng)
    names = np.array(GENRES[:n_genres], dtype=object)
    genre_text = np.where(second >= 0, names[genre] + "|" + names[np.maximum(second, 0)], names[genre])
    item_ids = np.char.add("i", np.arange(n_items).astype(str))
    items = pd.DataFrame({
        "ITEM_ID": item_ids, "GENRE": genre_text,
        "PRICE": np.round(rng.uniform(1, 50, n_items), 2),
        "CREATION_TIMESTAMP": rng.integers(1_420_070_400, 1_704_067_200, n_items)})

    # items of each genre (primary or second) and their popularity-proportional sampling tables
    members = [np.flatnonzero((genre == g) | (second == g)) for g in range(n_genres)]
    cdfs = [np.cumsum(popularity[m]) / popularity[m].sum() for m in members]
    global_cdf = np.cumsum(popularity) / popularity.sum()

    counts = np.maximum(rng.poisson(interactions_per_user, n_users), 3)
    total = int(counts.sum())
    owner = np.repeat(np.arange(n_users), counts)
    likes = rng.integers(0, n_genres, (n_users, 2))
    likes[:, 1] = np.where(rng.random(n_users) < 0.5, likes[:, 0], likes[:, 1])
    pick = likes[owner, rng.integers(0, 2, total)]
    in_taste = rng.random(total) < taste
    u = rng.random(total)
    item = np.minimum(np.searchsorted(global_cdf, u), n_items - 1)
    for g in range(n_genres):
        sel = np.flatnonzero(in_taste & (pick == g))
        if len(sel) and len(members[g]):
            k = np.minimum(np.searchsorted(cdfs[g], u[sel]), len(members[g]) - 1)
            item[sel] = members[g][k]
    start = rng.integers(1_700_000_000, 1_710_000_000, n_users)
    gaps = rng.integers(30, 86_400, total)
    first = np.zeros(total, dtype=bool)
    first[np.concatenate(([0], np.cumsum(counts)[:-1]))] = True
    ts = np.cumsum(gaps)
    base = np.repeat(ts[first] - gaps[first], counts)
    ts = start[owner] + ts - base
    event = np.array(EVENT_TYPES, dtype=object)[
        np.searchsorted([0.7, 0.9], rng.random(total), side="right")]
    interactions = pd.DataFrame({
        "USER_ID": np.char.add("u", owner.astype(str)), "ITEM_ID": item_ids[item],
        "TIMESTAMP": ts, "EVENT_TYPE": event,
        "EVENT_VALUE": np.round(rng.random(total), 3)})
    users = pd.DataFrame({
        "USER_ID": np.char.add("u", np.arange(n_users).astype(str)),
        "AGE": rng.integers(18, 80, n_users),
        "MEMBERSHIP": np.array(["free", "basic", "premium"], dtype=object)[rng.integers(0, 3, n_users)]})

    ext = ".csv.gz" if compress else ".csv"
    out = {}
    for name, frame in (("interactions", interactions), ("items", items), ("users", users)):
        file = os.path.join(path, name + ext)
        tmp = file + ".tmp"
        frame.to_csv(tmp, index=False, compression="gzip" if compress else None)
        os.replace(tmp, file)
        out[name] = file
    return out
