"""Test doubles: an in-memory StateLoader and UserSource (with `lookup_many`), the Recommender
without a database, for tests and benchmarks of the serving core on random embeddings (the
PostgreSQL versions live in movierec_assets/serving/online/state.py and users.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl

from movierec_assets.serving.index.embeddings import EmbeddingStore
from movierec_assets.serving.online.history_tower import HistoryEncoder, HistoryTower
from movierec_assets.serving.online.state import Catalog, ServingState, UserData, unit_rows
from movierec_assets.serving.online.tower import NumpyTower, UserEncoder, l2_normalize
from movierec_assets.serving.online.users import UsersBatch


@dataclass
class MemoryStateLoader:
    states: dict[str, ServingState] = field(default_factory=dict)
    current: str | None = None
    loads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, state: ServingState) -> None:
        """Make a new version servable (what a champion's movie_embeddings run does)."""
        with self._lock:
            self.states[state.version] = state
            self.current = state.version

    def servable_version(self) -> str | None:
        return self.current

    def load(self, version: str) -> ServingState:
        self.loads += 1
        return self.states[version]


@dataclass
class MemoryUserSource:
    """Users in dicts: feature rows, rated movie ids newest first (`seen`) and their stars (`stars`;
    a user without them has zeros, which only a history-aware encoder would read)."""

    columns: list[str]
    features: dict[int, np.ndarray] = field(default_factory=dict)
    seen: dict[int, np.ndarray] = field(default_factory=dict)
    stars: dict[int, np.ndarray] = field(default_factory=dict)

    def lookup_rated(self, user_id: int) -> tuple[np.ndarray, np.ndarray]:
        seen = self.seen.get(user_id)
        if seen is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        stars = self.stars.get(user_id)
        return seen, np.zeros(len(seen), np.float32) if stars is None else np.asarray(stars, np.float32)

    def lookup(self, user_id: int) -> UserData:
        row = self.features.get(user_id)
        frame = None if row is None else pl.DataFrame([row.tolist()], schema=self.columns, orient="row")
        return UserData(frame, *self.lookup_rated(user_id))


def identity_scaler(columns: list[str]):  # type: ignore[no-untyped-def]
    def scale(df: pl.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(df, np.ndarray):  # rows already in column order
            return df.astype(np.float32)
        return np.column_stack([df.get_column(c).to_numpy() for c in columns]).astype(np.float32)

    return scale


def random_tower(rng: np.random.Generator, n_features: int, layers: list[int], dims: int) -> NumpyTower:
    """A tower of the model's shape with random weights (ReLU stack, linear output, L2 norm)."""
    sizes = [n_features, *layers, dims]
    dense = tuple(
        (rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a), np.zeros(b, np.float32),
         "relu" if i < len(layers) else "linear")
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    )
    return NumpyTower(dense)


def random_history_encoder(rng: np.random.Generator, features: NumpyTower, vocab: np.ndarray, id_dim: int,
                           layers: list[int], history_len: int) -> HistoryEncoder:
    """`features` plus a random history term of the model's shape (ID table over `vocab`, the
    history net's ReLU stack and linear output, as wide as the feature tower's output)."""
    dims = features.layers[-1][0].shape[1]
    table = (0.05 * rng.standard_normal((len(vocab) + 1, id_dim))).astype(np.float32)
    net = random_tower(rng, 2 * id_dim + 1, layers, dims)
    history = HistoryTower(np.sort(np.asarray(vocab, np.int32)), table, NumpyTower(net.layers, normalize=False),
                           history_len)
    return HistoryEncoder(features, history)


def random_state(version: str, movie_ids: np.ndarray, dims: int, encoder: UserEncoder, columns: list[str],
                 rng: np.random.Generator, bias: np.ndarray | None = None) -> ServingState:
    """Random L2-normalised movie embeddings with synthetic titles and a random popularity order
    (`bias`: a ranking prior per movie, aligned with `movie_ids`; none by default)."""
    matrix = l2_normalize(rng.standard_normal((len(movie_ids), dims)).astype(np.float32))
    store = EmbeddingStore.build(version, movie_ids, matrix, datetime.now(UTC), bias)
    m = len(store.movie_ids)
    catalog = Catalog(
        [f"Movie {i}" for i in store.movie_ids.tolist()],
        [1900 + i % 120 for i in range(m)],
        [["Drama"] if i % 2 else ["Comedy", "Romance"] for i in range(m)],
        rng.permutation(m).astype(np.int64),
    )
    return ServingState(store, unit_rows(store.matrix), catalog, encoder, identity_scaler(columns))


class MemoryBatchUserSource(MemoryUserSource):
    """`MemoryUserSource` plus `lookup_many`: the batch's feature rows stacked into one array
    (a polars frame would cost ~0.25 ms per batch to build, one Series per column)."""

    def lookup_many(self, user_ids: list[int]) -> UsersBatch:
        known = [u for u in dict.fromkeys(user_ids) if u in self.features]
        rows = np.stack([self.features[u] for u in known]) if known else None
        at = {u: i for i, u in enumerate(known)}
        data = [self.lookup_rated(u) for u in user_ids]
        return UsersBatch(rows, [at.get(u) for u in user_ids], [d[0] for d in data], [d[1] for d in data])
