"""Synthetic models with planted structure, for demos, tests and benchmarks.

``synthetic()`` builds, with vectorised NumPy only, a :class:`rankcore.Model` with ``n_genres``
genres (random directions of norm about 3). Each item is its primary genre's direction (+ half a
second genre's, for half the items) plus noise; each user prefers one genre (its direction plus
noise), so ranking puts that genre first. Context ``DEVICE`` (``"mobile phone"``, ``"desktop"``,
``"tablet"``) adds 1.2 times genre ``GENRES[0]``, ``[1]``, ``[2]`` (on a mobile phone most users
see Comedy first). Item metadata: ``GENRE`` (multi-valued), ``PRICE``, ``CREATION_TIMESTAMP``
(2015-2024); users: ``AGE`` (18-80) and about ``interactions_per_user`` interactions, 80% in the
preferred genre, event types ``click`` 70%, ``watch`` 20%, ``purchase`` 10%. IDs are decimal
strings as in Amazon's sample data: item ``"i"`` is row ``i``, users likewise.
"""
from __future__ import annotations

import numpy as np

from ..core import ItemTable, aligned_zeros
from .columns import MultiCategoricalColumn, NumericColumn
from .ids import id_index_from_blob, make_id_index
from .model import Model
from .parts import ContextTable, History

__all__ = ["synthetic", "GENRES", "DEVICES", "EVENT_TYPES"]

GENRES = ("Comedy", "Drama", "Action", "Thriller", "Romance", "Horror", "Documentary", "Animation",
          "Fantasy", "SciFi", "Crime", "Family", "Musical", "Western", "War", "Mystery", "History",
          "Sport", "Adventure", "Biography")
DEVICES = ("mobile phone", "desktop", "tablet")
EVENT_TYPES = ("click", "watch", "purchase")


def decimal_id_blob(n: int) -> tuple:
    """UTF-8 blob of the decimal strings ``"0"`` ... ``str(n - 1)``: ``(uint8 data, int64 offsets)``."""
    num = np.arange(n, dtype=np.int64)
    ndig = np.ones(n, dtype=np.int64)
    p = 10
    while p <= max(n - 1, 0):
        ndig += num >= p
        p *= 10
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ndig, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    rest = num.copy()
    for j in range(int(ndig.max()) if n else 0):  # j-th digit from the right
        has = ndig > j
        pos = offsets[1:][has] - 1 - j
        data[pos] = (48 + rest[has] % 10).astype(np.uint8)
        rest //= 10
    return data, offsets


def synthetic(n_users: int = 1000, n_items: int = 10000, dim: int = 64, seed: int = 0, *,
              n_genres: int = 12, item_bias: bool = False, with_context: bool = True,
              with_metadata: bool = True, with_history: bool = True,
              interactions_per_user: int = 20):
    """A :class:`rankcore.Model` with planted genre preferences (see the module docstring).

    Parameters
    ----------
    n_users, n_items, dim : int
        Sizes (``n_items >= 1``); genres may be empty when ``n_items < n_genres``.
    seed : int
        Everything is a deterministic function of the arguments.
    n_genres : int
        1 to ``len(GENRES)``.
    item_bias : bool
        Add a small popularity bias per item.
    with_context, with_metadata, with_history : bool
        Include the ``DEVICE`` context, the metadata columns, the interaction histories.
    """

    if not 1 <= n_genres <= len(GENRES):
        raise ValueError(f"n_genres must be between 1 and {len(GENRES)}")
    if n_users < 0 or n_items < 1 or dim < 1:
        raise ValueError("need n_users >= 0, n_items >= 1 and dim >= 1")
    # every random draw below happens in a fixed order: the model is a function of the arguments
    rng = np.random.default_rng(seed)
    scale = np.float32(3.0)
    centroids = rng.standard_normal((n_genres, dim), dtype=np.float32)
    centroids *= scale / np.linalg.norm(centroids, axis=1, keepdims=True)
    noise = np.float32(1.0 / np.sqrt(dim))

    table, primary, secondary, has2 = _items(rng, centroids, n_items, noise, item_bias)
    item_index = id_index_from_blob(*decimal_id_blob(n_items))

    pref = rng.integers(0, n_genres, n_users)
    users = rng.standard_normal((n_users, dim), dtype=np.float32) * noise + centroids[pref]
    users = np.ascontiguousarray(users, dtype=np.float32)
    user_index = id_index_from_blob(*decimal_id_blob(n_users))
    cold = users.mean(axis=0, dtype=np.float64).astype(np.float32) if n_users else \
        np.zeros(dim, np.float32)

    context = {}
    if with_context:
        vecs = np.stack([centroids[i % n_genres] * np.float32(1.2) for i in range(len(DEVICES))])
        context["DEVICE"] = ContextTable(make_id_index(list(DEVICES)),
                                         np.ascontiguousarray(vecs, dtype=np.float32))
    item_cols, user_cols = {}, {}
    if with_metadata:
        item_cols, user_cols = _metadata(rng, primary, secondary, has2, n_genres, n_users)
    history = None
    if with_history and n_users and n_items:
        history = _history(rng, primary, pref, n_genres, interactions_per_user)

    return Model(item_index=item_index, item_table=table, user_index=user_index,
                 user_embeddings=users, cold_start=cold, context=context, item_columns=item_cols,
                 user_columns=user_cols, history=history)


def _items(rng, centroids: np.ndarray, n_items: int, noise, item_bias: bool) -> tuple:
    """The item table, written straight into the padded table (no second copy of an n x d array),
    and each item's ``primary`` and ``secondary`` genre (``has2``: whether it has a second)."""
    n_genres, dim = centroids.shape
    primary = rng.integers(0, n_genres, n_items)
    has2 = rng.random(n_items) < 0.5
    secondary = (primary + 1 + rng.integers(0, max(n_genres - 1, 1), n_items)) % n_genres
    has2 &= secondary != primary
    pdim = max(16, -(-dim // 16) * 16)
    # embedding = primary + 0.5 secondary direction + rank-r noise, as one (n, r + g) @ (r + g, dim)
    # product written into the padded table (cheaper than a full-rank normal draw)
    r = min(dim, 16)
    left = np.zeros((n_items, r + n_genres), dtype=np.float32)
    left[:, :r] = rng.standard_normal((n_items, r), dtype=np.float32)
    rows = np.arange(n_items)
    left[rows, r + primary] = 1.0
    sec = np.flatnonzero(has2)
    left[sec, r + secondary[sec]] = 0.5
    basis = rng.standard_normal((r, dim), dtype=np.float32) * np.float32(1.0 / np.sqrt(r)) * noise
    right = np.concatenate([basis, centroids]).astype(np.float32)
    data = aligned_zeros(n_items, pdim)  # 64-byte aligned, as ItemTable.from_padded requires
    if pdim == dim:
        np.matmul(left, right, out=data)
    else:
        data[:, :dim] = left @ right
    del left
    bias = (rng.standard_normal(n_items, dtype=np.float32) * np.float32(0.3)) if item_bias else None
    return ItemTable.from_padded(data, dim, bias=bias), primary, secondary, has2


def _metadata(rng, primary, secondary, has2, n_genres: int, n_users: int) -> tuple:
    """Item columns GENRE, PRICE, CREATION_TIMESTAMP and user column AGE."""
    n_items = len(primary)
    counts = 1 + has2.astype(np.int64)
    offsets = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    codes = np.empty(int(offsets[-1]), dtype=np.int32)
    codes[offsets[:-1]] = primary
    codes[offsets[1:][has2] - 1] = secondary[has2]
    item_cols = {"GENRE": MultiCategoricalColumn("GENRE", offsets, codes, GENRES[:n_genres])}
    price = np.round(np.exp(rng.normal(2.5, 0.8, n_items)), 2) + 0.99
    item_cols["PRICE"] = NumericColumn("PRICE", np.round(price, 2))
    t0, t1 = 1420070400, 1735689600  # 2015-01-01 .. 2025-01-01
    item_cols["CREATION_TIMESTAMP"] = NumericColumn(
        "CREATION_TIMESTAMP", rng.integers(t0, t1, n_items).astype(np.float64))
    user_cols = {"AGE": NumericColumn("AGE", rng.integers(18, 81, n_users).astype(np.float64))}
    return item_cols, user_cols


def _history(rng, primary, pref, n_genres: int, interactions_per_user: int) -> History:
    """About ``interactions_per_user`` interactions per user, 80% in the preferred genre."""
    n_items, n_users = len(primary), len(pref)
    per = rng.poisson(interactions_per_user, n_users)
    owner = np.repeat(np.arange(n_users), per)
    m = owner.shape[0]
    order = np.argsort(primary, kind="stable")  # items grouped by primary genre
    g_start = np.searchsorted(primary[order], np.arange(n_genres))
    g_count = np.bincount(primary, minlength=n_genres)
    genre = np.where(rng.random(m) < 0.8, pref[owner], rng.integers(0, n_genres, m))
    empty = g_count[genre] == 0
    pick = g_start[genre] + (rng.random(m) * np.maximum(g_count[genre], 1)).astype(np.int64)
    items = order[np.minimum(pick, n_items - 1)]
    items[empty] = rng.integers(0, n_items, int(empty.sum()))
    ev = rng.choice(len(EVENT_TYPES), size=m, p=[0.7, 0.2, 0.1]).astype(np.int16)
    ts = rng.integers(1704067200, 1735689600, m).astype(np.float64)  # during 2024
    srt = np.lexsort((ts, owner))
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(per, out=offsets[1:])
    return History(offsets, items[srt].astype(np.int64), ev[srt], ts[srt], EVENT_TYPES)
