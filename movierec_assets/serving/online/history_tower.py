"""The history-aware user tower in numpy, and the history inputs built from users' rated movies.

`HistoryEncoder` replays `ColaborativeFiltering.user_vector` (ml/two_tower.py): the feature tower
(`NumpyTower`, or the Keras fallback), plus the history term of `history_vector`: the newest N
rated movies' ID rows (the movie tower's own table, looked up in the model's vocabulary; movies
without a row and padding are masked), their mean and rating-centred mean, the log count, the
small history net, zero without a usable history; then `ops.normalize(u + h)`. Sums over a row
are a fixed binary tree (`tree_sum`) or exact (counts), and the pools are one same-shaped product
per row, so a user's vector has the same bits alone and in any batch (the rule of tower.py).

`rated_inputs` turns a batch's rated movies (newest first, as `movielens.user_rated` stores them)
into the seen-mask pairs and the history inputs of ml/history.py's interface: ids unknown to the
served catalogue are skipped and counted, the newest N of the rest kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from movierec_assets.serving.index.topn import tree_sum
from movierec_assets.serving.online.tower import (
    NumpyTower,
    UserEncoder,
    encode_rows,
    encoder_for,
    l2_normalize,
)

PAD_ID = -1  # ml/history.PAD_ID
_NORMALIZE_EPSILON = 1e-7  # keras.ops.normalize's default (backend.epsilon())

History = tuple[np.ndarray, np.ndarray]  # (movie ids (B, N) int32 -1 padded, stars (B, N) float32)


@dataclass(frozen=True)
class HistoryTower:
    """`history_vector` of a trained model: (B, N) ids and stars -> (B, d) history term."""

    vocab: np.ndarray  # (V,) int32 sorted movie ids with an ID row (row = position + 1)
    table: np.ndarray  # (V + 1, id_dim) float32; row 0 is the shared "rare" row (always masked)
    net: NumpyTower  # the history net's Dense stack (no normalisation)
    history_len: int
    rating_weight: bool = True

    @classmethod
    def from_model(cls, model: Any) -> HistoryTower:
        vocab = np.asarray(model.movie_lookup.vocab, np.int32)
        table = np.asarray(model.movie_table.embeddings, np.float32)
        net = NumpyTower.from_keras(model.history_net)
        hp = model.hparams
        return cls(vocab, table, net, int(hp.history_len), bool(hp.history_rating_weight))

    def id_rows(self, movie_ids: np.ndarray) -> np.ndarray:
        """`MovieIdLookup`: the ID row of each id, 0 for ids without one (and padding)."""
        ids = np.asarray(movie_ids, np.int64)
        if len(self.vocab) == 0:
            return np.zeros(ids.shape, np.int64)
        pos = np.minimum(np.searchsorted(self.vocab, ids), len(self.vocab) - 1)
        return np.where(self.vocab[pos] == ids, pos + 1, 0)

    def forward(self, movie_ids: np.ndarray, stars: np.ndarray) -> np.ndarray:
        n = self.history_len
        rows = self.id_rows(movie_ids[:, :n])
        ratings = np.asarray(stars[:, :n], np.float32)
        mask = (rows > 0).astype(np.float32)
        count = mask.sum(axis=1)  # whole numbers: exact in any order
        inv = (np.float32(1.0) / np.maximum(count, np.float32(1.0)))[:, None]
        centred = (ratings - tree_sum(ratings * mask)[:, None] * inv) * mask
        if not self.rating_weight:
            centred = centred * np.float32(0.0)
        # Both pools in one (2, N) x (N, id_dim) product per row: same shape for every row, so the
        # same bits alone and in any batch (as NumpyTower's per-row products).
        pools = np.stack([mask, centred], axis=1) @ self.table[rows]  # (B, 2, id_dim)
        pooled = np.concatenate([
            pools.reshape(len(rows), -1) * np.repeat(inv, 2 * self.table.shape[1], axis=1),
            (np.log1p(count) / np.float32(np.log1p(n)))[:, None].astype(np.float32),
        ], axis=1)
        return self.net.forward(pooled) * (count > 0).astype(np.float32)[:, None]


@dataclass(frozen=True)
class HistoryEncoder:
    """`user_vector`: normalize(feature tower(features) + history term)."""

    features: Any  # NumpyTower, or KerasEncoder for towers the replay does not know
    history: HistoryTower

    @property
    def history_len(self) -> int:
        return self.history.history_len

    def forward(self, x: np.ndarray, ids: np.ndarray, history: History | None = None) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.history.net.layers[-1][0].shape[1]), np.float32)
        u = encode_rows(self.features, np.asarray(x, np.float32), np.asarray(ids))
        if history is None:
            history = empty_history(len(u), self.history_len)
        return l2_normalize(u + self.history.forward(*history), _NORMALIZE_EPSILON)

    def encode(self, features: np.ndarray, user_id: int, history: History | None = None) -> np.ndarray:
        return self.forward(features, np.array([user_id]), history)[0]


def encoder_for_model(model: Any) -> UserEncoder:
    """The user encoder of a trained two-tower: its user tower, plus the history term when the
    model pools histories (`HistoryEncoder`)."""
    features = encoder_for(model.user_net)
    if not getattr(model, "uses_history", False):
        return features
    return HistoryEncoder(features, HistoryTower.from_model(model))


def empty_history(users: int, n: int) -> History:
    return np.full((users, n), PAD_ID, np.int32), np.zeros((users, n), np.float32)


@dataclass
class HistoryCounters:
    """What the served histories dropped (per served version; /health reports them)."""

    skipped_ids: int = 0  # rated movies unknown to the served catalogue (new or removed), skipped
    truncated_users: int = 0  # histories longer than N, cut to the newest N
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, skipped: int, truncated: int) -> bool:
        """Counts them; True the first time anything was skipped (worth one log line)."""
        with self._lock:
            first = self.skipped_ids == 0 and skipped > 0
            self.skipped_ids += skipped
            self.truncated_users += truncated
        return first


@dataclass(frozen=True)
class RatedInputs:
    owner: np.ndarray  # (K,) request index of every rated movie known to the catalogue
    rows: np.ndarray  # (K,) its movie row: the seen-mask pairs
    history: History | None  # (B, N) per request, when N > 0
    skipped: int  # rated movies unknown to the catalogue
    truncated: int  # requests with more than N known rated movies


def rated_inputs(rows_of: Any, rated: list[np.ndarray], stars: list[np.ndarray], n: int,
                 use: np.ndarray | None = None) -> RatedInputs:
    """From each request's rated movie ids and stars, newest first: the seen pairs and, for N > 0,
    the histories (`use`: bool per request whose history is encoded and counted; all by default)."""
    b = len(rated)
    owner = np.repeat(np.arange(b), [len(r) for r in rated])
    ids = np.concatenate(rated).astype(np.int64) if b else np.zeros(0, np.int64)
    rows = rows_of(ids) if len(ids) else np.zeros(0, np.int64)
    known = rows >= 0
    seen_owner, seen_rows = owner[known], rows[known]
    if n <= 0:
        return RatedInputs(seen_owner, seen_rows, None, 0, 0)
    use = np.ones(b, bool) if use is None else use
    skipped = int((~known & use[owner]).sum())
    vals = (np.concatenate(stars) if b else np.zeros(0)).astype(np.float32)[known]
    start = np.searchsorted(seen_owner, np.arange(b))  # each request's first known entry
    pos = np.arange(len(seen_owner)) - start[seen_owner]
    counts = np.bincount(seen_owner, minlength=b)
    keep = pos < n
    hist_ids, hist_stars = empty_history(b, n)
    hist_ids[seen_owner[keep], pos[keep]] = ids[known][keep]
    hist_stars[seen_owner[keep], pos[keep]] = vals[keep]
    truncated = int(((counts > n) & use).sum())
    return RatedInputs(seen_owner, seen_rows, (hist_ids, hist_stars), skipped, truncated)
