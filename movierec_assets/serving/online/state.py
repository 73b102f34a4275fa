"""What the Recommender serves from: an immutable `ServingState` per model version, its loader, and
the per-request user lookups.

A state is built completely (embeddings, catalog, popularity, user encoder, scaler) before it is
swapped in, so a reload can never expose a half-built version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import psycopg

from movierec_assets.db import bulk
from movierec_assets.db.connect import DatabaseUnavailable, connect, one_line, server_of
from movierec_assets.db.url import libpq_params
from movierec_assets.features.scaling import make_scaler
from movierec_assets.ml import feature_io, registry  # registry.load_model imports Keras when called
from movierec_assets.serving.index import embeddings
from movierec_assets.serving.index.embeddings import EmbeddingStore
from movierec_assets.serving.online.history_tower import encoder_for_model
from movierec_assets.serving.online.tower import UserEncoder

Scaler = Callable[[pl.DataFrame | np.ndarray], np.ndarray]  # an array: columns in canonical order
ModelParts = Callable[[str], tuple[UserEncoder, Scaler]]

# The champion's embeddings when they exist; until then the newest complete set (the previous
# champion's), so a promotion never interrupts serving.
_SERVABLE_VERSION = """
SELECT e.model_version, e.created_at
FROM ml.embedding_sets e LEFT JOIN ml.model_versions v ON v.version = e.model_version
ORDER BY (v.status = 'champion') IS TRUE DESC, e.created_at DESC
LIMIT 1
"""


@dataclass(frozen=True)
class Catalog:
    """Movie metadata aligned with the embedding rows."""

    titles: list[str | None]
    years: list[int | None]
    genres: list[list[str]]
    popular_rows: np.ndarray  # rows by popularity, most popular first


@dataclass(frozen=True)
class ServingState:
    store: EmbeddingStore
    unit: np.ndarray  # row-normalised embeddings, for cosine similarity between movies
    catalog: Catalog
    encoder: UserEncoder
    scaler: Scaler
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.store.version


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1), dtype=np.float32)


def read_catalog(url: str, movie_ids: np.ndarray) -> Catalog:
    """Titles, years and genres from movielens.movies; popularity from the movie features."""
    ids = pl.DataFrame({"movie_id": movie_ids.astype(np.int32)})
    movies = bulk.read_polars(url, "SELECT movie_id, title, year, genres FROM movielens.movies")
    popularity = bulk.read_polars(url, "SELECT movie_id, log_count FROM features.movie_features")
    joined = (
        ids.with_row_index("row")
        .join(movies.with_columns(pl.col("movie_id").cast(pl.Int32)), on="movie_id", how="left")
        .join(popularity.with_columns(pl.col("movie_id").cast(pl.Int32)), on="movie_id", how="left")
        .sort("row")
    )
    popular = joined.sort(
        [pl.col("log_count").fill_null(-1.0), pl.col("movie_id")], descending=[True, False]
    )["row"].to_numpy()
    return Catalog(
        joined["title"].to_list(),
        joined["year"].to_list(),
        [g or [] for g in joined["genres"].to_list()],
        popular.astype(np.int64),
    )


class VersionRefused(RuntimeError):
    """A model version that must not be served as it is (for example: its scaling stats are
    missing). The message says which version and why; retrying does not help."""


def model_stats(version: str, model_path: str) -> pl.DataFrame:
    """The scaling stats the model was trained with, saved beside it (`scaling_stats.parquet`).

    No fallback: today's `features.scaling_stats` are not the ones the model was trained with,
    so a version without its own file is refused (VersionRefused, naming the missing file)."""
    path = Path(model_path) / feature_io.STATS_FILE
    try:
        return feature_io.load_stats(Path(model_path))
    except FileNotFoundError:
        raise VersionRefused(f"model version {version}: {path} is missing; refusing to serve it with scaling "
                             "stats it was not trained with") from None


def champion_parts(url: str) -> ModelParts:
    """Loads a registered model's user tower (and history term) as a fast encoder, and the shared
    feature scaler."""

    def parts(version: str) -> tuple[UserEncoder, Scaler]:
        entry = registry.get_version(url, version)
        if entry is None:
            raise embeddings.EmbeddingsUnavailable(f"model version {version!r} is not registered")
        model = registry.load_model(entry.path)
        stats = model_stats(version, entry.path).filter(pl.col("table_name") == feature_io.USER_TABLE)
        return encoder_for_model(model), make_scaler(stats, feature_io.USER_TABLE)

    return parts


class StateLoader(Protocol):
    def servable_version(self) -> str | None: ...

    def load(self, version: str) -> ServingState: ...


@dataclass
class PostgresStateLoader:
    url: str
    model_parts: ModelParts | None = None

    def servable_version(self) -> str | None:
        with connect(self.url, autocommit=True) as conn:
            row = conn.execute(_SERVABLE_VERSION).fetchone()
        return row[0] if row else None

    def load(self, version: str) -> ServingState:
        store = embeddings.load(self.url, version)
        encoder, scaler = (self.model_parts or champion_parts(self.url))(version)
        return ServingState(store, unit_rows(store.matrix), read_catalog(self.url, store.movie_ids), encoder, scaler)


@dataclass(frozen=True)
class UserData:
    features: pl.DataFrame | None  # the user's one row of features.user_features, or None
    seen: np.ndarray  # every movie id the user has rated (history and partitions), newest first
    stars: np.ndarray | None = None  # float32 ratings aligned with `seen`; None: not known

    def stars_or_zeros(self) -> np.ndarray:
        return np.zeros(len(self.seen), np.float32) if self.stars is None else self.stars


# One row per user (sql/007): rated movie ids and stars packed big-endian, newest first.
USER_RATED = "SELECT movie_ids, ratings FROM movielens.user_rated WHERE user_id = %s"


def unpack_rated(ids: bytes | None, stars: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """A user_rated row's packed columns as (int64 movie ids, float32 stars)."""
    if ids is None:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.frombuffer(ids, ">i4").astype(np.int64), np.frombuffer(stars or b"", ">f4").astype(np.float32)


class UserSource(Protocol):
    def lookup(self, user_id: int) -> UserData: ...


class PostgresUserSource:
    """Two indexed point queries per request (features, the user_rated row), on one connection per
    thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self.url, autocommit=True, **libpq_params(self.url))
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {server_of(self.url)}: {one_line(exc)}") from None
            self._local.conn = conn
        return conn

    def lookup(self, user_id: int) -> UserData:
        try:
            return self._lookup(user_id)
        except psycopg.OperationalError:
            self._drop()  # a broken connection (server restart): reconnect once
            return self._lookup(user_id)

    def _lookup(self, user_id: int) -> UserData:
        conn = self._conn()
        with conn.pipeline():  # both point queries in one round trip
            cur = conn.execute("SELECT * FROM features.user_features WHERE user_id = %s", (user_id,))
            rated = conn.execute(USER_RATED, (user_id,), binary=True)
        row = cur.fetchone()
        names = [d.name for d in cur.description]
        packed = rated.fetchone()
        features = pl.DataFrame([row], schema=names, orient="row") if row else None
        return UserData(features, *unpack_rated(*(packed or (None, None))))

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
