"""What recorded events, items and users change in one campaign (``LiveState``).

``LiveState.apply(records)`` takes records of an event store (in sequence order) and:

- records each event's item as an interaction of its user (or, anonymous, of its session ID)
  in ``CampaignData``, so Interactions filters see it;
- lays PutItems and PutUsers metadata over the model's columns (``overlay.MetadataOverlay``),
  which Items filters, ``CurrentUser`` conditions and ``metadataColumns`` read;
- moves the user vector of every user and anonymous session with recent events: the fold-in
  (closed-form ALS solve) of its last ``RECENT_EVENTS`` known items, weighted by event type
  (``EVENT_WEIGHTS``), rescaled to the norm of the trained vector, and blended with it:
  ``u' = (1 - w) u + w f`` with ``w = n / (n + BLEND_EVENTS)`` for ``n`` recent events (at most
  ``MAX_BLEND``). ``Campaign.user_vector`` adds ``u' - u`` (``delta``) to every request's vector.
An anonymous session's events count for its user from the first event that carries both.
"""
from __future__ import annotations

import logging
from collections import deque

import numpy as np

from ..errors import InvalidInputException
from ..model.foldin import item_gram, solve_users
from .overlay import MetadataOverlay, parse_properties

__all__ = ["LiveState", "EVENT_WEIGHTS", "RECENT_EVENTS", "BLEND_EVENTS", "MAX_BLEND",
           "DEFAULT_REGULARIZATION"]

log = logging.getLogger(__name__)

#: Fold-in weight of an event type (lower case); any other type weighs 1 (a click, a view).
EVENT_WEIGHTS = {"purchase": 4.0, "buy": 4.0, "order": 4.0, "add-to-cart": 2.0, "addtocart": 2.0,
                 "cart": 2.0, "like": 2.0, "rating": 2.0, "rate": 2.0, "watch": 2.0, "play": 2.0,
                 "listen": 2.0, "read": 2.0, "download": 2.0, "click": 1.0, "view": 1.0}
#: Events per user (or session) that move its vector: the newest ones.
RECENT_EVENTS = 50
#: ``w = n / (n + BLEND_EVENTS)``: after this many events the fold-in weighs as much as the trained vector.
BLEND_EVENTS = 5.0
#: Largest weight of the fold-in in the blend.
MAX_BLEND = 0.9
#: Fold-in regularization for a model whose training metadata has none (implicit's default).
DEFAULT_REGULARIZATION = 0.01
#: Users and sessions whose recent events are held (the least recently active is dropped first).
MAX_KEYS = 200_000


class LiveState:
    """The per-campaign effects of recorded events, items and users (see the module docstring).

    Not thread-safe for writers: ``apply`` runs under the ``EventFeed``'s lock. Readers
    (``delta``, the columns published into ``CampaignData``) take no lock.
    """

    def __init__(self, campaign):
        self.campaign = campaign
        model = campaign.model
        self.model = model
        self.items = MetadataOverlay(model.item_columns, model.n_items)
        self.users = MetadataOverlay(model.user_columns, model.n_users)
        self.new_items: dict = {}   # item ID unknown to the model -> its newest properties
        self.recent: dict = {}      # user or session ID -> deque of (sequence, row, weight)
        self.links: dict = {}       # session ID -> the user ID it was seen with
        self.deltas: dict = {}      # user or session ID -> float32 (dim,) added to its vector
        self._gram = None
        self._ref_norm = None

    # ----------------------------------------------------------------- checks before storing
    def check_items(self, items) -> None:
        """Refuse item properties the model's columns cannot hold (a word in a numeric field)."""
        for i, entry in enumerate(items):
            parse_properties(entry.get("properties"), self.model.item_columns, f"items[{i}]")

    def check_users(self, users) -> None:
        for i, entry in enumerate(users):
            parse_properties(entry.get("properties"), self.model.user_columns, f"users[{i}]")

    # ----------------------------------------------------------------- applying
    def apply(self, records) -> None:
        """Apply stored records (``EventRecord``, ``ItemRecord``, ``UserRecord``) in order."""
        interactions: dict = {}  # key -> ([rows], [types], [stamps])
        dirty: set = set()
        items_changed = users_changed = False
        for r in records:
            if r.kind == "event":
                self._event(r, interactions, dirty)
            elif r.kind == "item":
                items_changed |= self._entity(r, self.items, self.model.item_columns, True)
            else:
                users_changed |= self._entity(r, self.users, self.model.user_columns, False)
        data = self.campaign.data
        for key, (rows, types, stamps) in interactions.items():
            data.record_interactions(key, rows, types, stamps)
        if items_changed:
            columns = self.items.columns()
            data.item_columns = columns
            self.campaign._item_columns = columns
        if users_changed:
            data.user_columns = self.users.columns()
            data.extra_user_rows = self.users.extra
        if dirty:
            self._update_vectors(dirty)

    def _event(self, r, interactions: dict, dirty: set) -> None:
        row = int(self.campaign._lookup([r.item_id])[0]) if r.item_id is not None else None
        entry = None if row is None else (r.sequence, row, EVENT_WEIGHTS.get(r.event_type.lower(), 1.0),
                                          r.event_type, r.sent_at)
        keys = []
        if r.user_id is None:
            keys.append(r.session_id)
            owner = self.links.get(r.session_id)
            if owner is not None:
                keys.append(owner)
        else:
            keys.append(r.user_id)
            if r.session_id != r.user_id and self.links.get(r.session_id) != r.user_id:
                self._link(r.session_id, r.user_id, interactions, dirty)
        if entry is None:
            return
        for key in keys:
            self._remember(key, entry, interactions, dirty)

    def _link(self, session: str, user: str, interactions: dict, dirty: set) -> None:
        """The session's anonymous events count for ``user`` from now on (and those held so far)."""
        self.links[session] = user
        if len(self.links) > MAX_KEYS:
            del self.links[next(iter(self.links))]
        for entry in list(self.recent.get(session, ())):
            self._remember(user, entry, interactions, dirty)

    def _remember(self, key: str, entry: tuple, interactions: dict, dirty: set) -> None:
        held = self.recent.pop(key, None)  # re-inserted last: the dict's order is activity order
        if held is None:
            held = deque(maxlen=RECENT_EVENTS)
            if len(self.recent) >= MAX_KEYS:
                dropped = next(iter(self.recent))
                del self.recent[dropped]
                self.deltas.pop(dropped, None)
        held.append(entry)
        self.recent[key] = held
        rows, types, stamps = interactions.setdefault(key, ([], [], []))
        rows.append(entry[1])
        types.append(entry[3])
        stamps.append(entry[4])
        dirty.add(key)

    def _entity(self, r, overlay: MetadataOverlay, columns: dict, is_item: bool) -> bool:
        key = r.item_id if is_item else r.user_id
        try:
            fields = parse_properties(r.properties, columns, key)
        except (InvalidInputException, ValueError) as exc:  # checked before storing; a store from elsewhere
            log.warning("skipping stored metadata of %s: %s", key, exc)
            return False
        row = self.campaign._lookup([key])[0] if is_item else self.model.user_row(key)
        if row < 0:
            if is_item:  # no embedding: ranked as unknown, metadata kept by ID only
                self.new_items[key] = fields
                return False
            row = overlay.extra_row(key)
        overlay.set(int(row), fields)
        return True

    # ----------------------------------------------------------------- user vectors
    def delta(self, key: str):
        """float32 (dim,) to add to ``key``'s vector, or None when its events move nothing."""
        return self.deltas.get(key)

    def _update_vectors(self, keys) -> None:
        """Recompute the deltas of ``keys``: one batched ALS solve for all of them."""
        indptr, indices, conf, counts, solved = [0], [], [], [], []
        for key in keys:
            per_item: dict = {}
            for _, row, weight, _, _ in self.recent.get(key, ()):
                if row >= 0:
                    per_item[row] = per_item.get(row, 0.0) + weight
            if not per_item:
                self.deltas.pop(key, None)
                continue
            solved.append(key)
            indices.extend(per_item)
            conf.extend(per_item.values())
            indptr.append(len(indices))
            counts.append(sum(1 for e in self.recent[key] if e[1] >= 0))
        if not solved:
            return
        model = self.model
        training = model.training
        alpha = float(training.get("alpha") or 1.0)
        reg = float(training.get("regularization") or DEFAULT_REGULARIZATION)
        vectors = model.item_table.vectors
        if self._gram is None:
            self._gram = item_gram(model.item_table.embeddings)
        f = solve_users(vectors, self._gram, reg, np.array(indptr), np.array(indices, dtype=np.int64),
                        np.array(conf) * alpha)
        rows = model.user_index.lookup(solved)
        u = np.where((rows >= 0)[:, None], np.asarray(model.user_embeddings)[np.maximum(rows, 0)],
                     np.asarray(model.cold_start)[None, :]).astype(np.float64)
        norm = np.linalg.norm(f, axis=1)
        ref = np.where(rows >= 0, np.linalg.norm(u, axis=1), 0.0)
        ref[ref == 0] = self._reference_norm()
        n = np.array(counts, dtype=np.float64)
        w = np.minimum(MAX_BLEND, n / (n + BLEND_EVENTS))
        ok = np.isfinite(norm) & (norm > 0)
        scale = np.where(ok, ref / np.where(ok, norm, 1.0), 0.0)
        deltas = (w[:, None] * (f * scale[:, None] - u)).astype(np.float32)
        for i, key in enumerate(solved):
            if ok[i]:
                self.deltas[key] = deltas[i]
            else:
                self.deltas.pop(key, None)

    def _reference_norm(self) -> float:
        """The mean norm of the trained user vectors (the cold-start vector's without users; 1 if 0)."""
        if self._ref_norm is None:
            users = np.asarray(self.model.user_embeddings)
            if users.shape[0]:
                sample = users[:: max(1, users.shape[0] // 10000)]
                ref = float(np.linalg.norm(sample, axis=1).mean())
            else:
                ref = float(np.linalg.norm(self.model.cold_start))
            self._ref_norm = ref if np.isfinite(ref) and ref > 0 else 1.0
        return self._ref_norm
