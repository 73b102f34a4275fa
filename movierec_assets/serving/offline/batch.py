"""The serving group's batch work, kept out of the Dagster assets: embed every movie with the
champion's movie tower, and write the top 10 for every user (build a new table, then swap).

Importing this module does not import TensorFlow: `embed_champion` imports ml/two_tower.py (Keras)
when it runs, and `registry.load_model` imports Keras when it is called.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ml import feature_io, registry  # registry.load_model imports Keras when called
from movierec_assets.serving.index import embeddings
from movierec_assets.serving.index.embeddings import EmbeddingStore
from movierec_assets.serving.index.topn import iter_top_n_batch, seen_csr
from movierec_assets.serving.online.history_tower import rated_inputs
from movierec_assets.serving.online.state import PostgresStateLoader, champion_parts, model_stats
from movierec_assets.serving.online.tower import encode_rows

Progress = Callable[[int], None]


@dataclass(frozen=True)
class EmbeddingRun:
    version: str
    movies: int
    dims: int
    seconds: float
    npy_dir: str | None
    skipped: str | None = None  # why nothing was computed, when nothing was


def has_embeddings(url: str, version: str) -> bool:
    with connect(url) as conn:
        return conn.execute("SELECT 1 FROM ml.embedding_sets WHERE model_version = %s", (version,)).fetchone() is not None


def embed_champion(url: str, progress: Progress | None = None, force: bool = False) -> EmbeddingRun:
    """Run the champion's movie tower over every row of features.movie_features and store the result.

    Skips (and says why) when there is no champion or its embeddings already exist.
    """
    from movierec_assets.ml.two_tower import embed, ranking_bias  # Keras (TensorFlow): only when embedding

    champion = registry.current_champion(url)
    if champion is None:
        return EmbeddingRun("", 0, 0, 0.0, None, skipped="no champion model yet")
    if not force and has_embeddings(url, champion.version):
        return EmbeddingRun(champion.version, 0, 0, 0.0, None, skipped="champion already has embeddings")
    start = time.perf_counter()
    model = registry.load_model(champion.path)
    movies = bulk.read_polars(url, "SELECT * FROM features.movie_features")
    ids, x = feature_io.scale_movies(movies, model_stats(champion.version, champion.path))
    matrix = embed(model.movie_net, x, ids, progress=progress)
    store = EmbeddingStore.build(champion.version, ids, matrix, bias=ranking_bias(model, x))
    npy_dir = embeddings.write_npy(embeddings.npy_dir_for(champion.path), store)
    seconds = time.perf_counter() - start
    embeddings.write_db(url, store, npy_dir, seconds)
    return EmbeddingRun(champion.version, len(ids), store.dims, seconds, str(npy_dir))


@dataclass(frozen=True)
class RecommendationRun:
    version: str
    users: int
    rows: int
    seconds: float
    skipped: str | None = None


def current_batch_version(url: str) -> str | None:
    with connect(url) as conn:
        row = conn.execute("SELECT model_version FROM ml.user_recommendations LIMIT 1").fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class RatedTable:
    """Every user_rated row at once: user ids ascending, CSR offsets, movie ids and stars (newest
    first within a user)."""

    user_ids: np.ndarray
    indptr: np.ndarray
    movie_ids: np.ndarray
    stars: np.ndarray

    def of(self, user_ids: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per user (sorted ids; absent users get nothing): rated movie ids and stars, as views."""
        pos = np.minimum(np.searchsorted(self.user_ids, user_ids), max(len(self.user_ids) - 1, 0))
        found = (self.user_ids[pos] == user_ids) if len(self.user_ids) else np.zeros(len(user_ids), bool)
        lo = np.where(found, self.indptr[pos], 0)
        hi = np.where(found, self.indptr[np.minimum(pos + 1, len(self.indptr) - 1)], 0)
        return ([self.movie_ids[a:b] for a, b in zip(lo, hi, strict=True)],
                [self.stars[a:b] for a, b in zip(lo, hi, strict=True)])


def _packed(column: pa.ChunkedArray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A bytea column of packed 4-byte values: (values, CSR offsets in values)."""
    col = column.combine_chunks() if column.num_chunks else pa.array([], pa.binary())
    if len(col) == 0:
        return np.zeros(0, dtype), np.zeros(1, np.int64)
    offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + len(col) + 1].astype(np.int64)
    data = np.frombuffer(col.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.view(dtype).astype(dtype.replace(">", "=")), (offsets - offsets[0]) // 4


def read_rated(url: str) -> RatedTable:
    """movielens.user_rated in one bulk read (COPY BINARY): 32M ratings are ~260 MB of bytes."""
    with adbc_connect(url, autocommit=True) as conn:
        table = bulk.fetch_arrow(conn, "SELECT user_id, movie_ids, ratings FROM movielens.user_rated ORDER BY user_id")
    ids, indptr = _packed(table.column("movie_ids"), ">i4")
    stars, _ = _packed(table.column("ratings"), ">f4")
    return RatedTable(table.column("user_id").to_numpy().astype(np.int64), indptr, ids.astype(np.int64), stars)


def user_queries(url: str, version: str, store: EmbeddingStore,
                 rated: RatedTable) -> tuple[np.ndarray, np.ndarray]:
    """(sorted user ids, their embeddings) from current user features and rated movies, through
    the same scaler, encoder, history rule and per-row forward pass as the server (`encode_rows`,
    `rated_inputs`), so a user's vector, and with it the table's answer, has the same bits as the
    API's. Users without ratings are left out when the encoder pools histories (the API gives
    them the cold-start answer)."""
    encoder, scaler = champion_parts(url)(version)
    users = bulk.read_polars(url, "SELECT * FROM features.user_features").sort("user_id")
    ids = users["user_id"].to_numpy().astype(np.int64)
    n = int(getattr(encoder, "history_len", 0))
    history = None
    if n:
        seen, stars = rated.of(ids)
        has = np.array([len(s) > 0 for s in seen], bool)
        ids, users = ids[has], users.filter(pl.Series(has))
        inputs = rated_inputs(store.rows_of, [s for s, h in zip(seen, has, strict=True) if h],
                              [s for s, h in zip(stars, has, strict=True) if h], n)
        history = inputs.history
    return ids, encode_rows(encoder, scaler(users), ids, history=history)


def seen_rows(rated: RatedTable, user_ids: np.ndarray, store: EmbeddingStore) -> tuple[np.ndarray, np.ndarray]:
    """CSR of every rated movie (as embedding rows) per user row, from the user_rated table."""
    if len(user_ids) == 0:
        return seen_csr(np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    users = np.repeat(rated.user_ids, np.diff(rated.indptr))
    movies = store.rows_of(rated.movie_ids)
    pos = np.minimum(np.searchsorted(user_ids, users), len(user_ids) - 1)
    keep = (movies >= 0) & (user_ids[pos] == users)  # users without features are not scored
    return seen_csr(pos[keep], movies[keep], len(user_ids))


def top_n_table(version: str, user_ids: np.ndarray, store: EmbeddingStore, queries: np.ndarray,
                seen: tuple[np.ndarray, np.ndarray], n: int, progress: Progress | None = None) -> pa.Table:
    """(model_version, user_id, rank, movie_id, score) for every user's top n."""
    users, ranks, movies, scores = [], [], [], []
    for start, rows, vals in iter_top_n_batch(store.matrix, queries, n, seen, bias=store.ranking_bias):
        valid = rows >= 0
        block_users = np.repeat(user_ids[start : start + len(rows)], n).reshape(len(rows), n)
        users.append(block_users[valid])
        ranks.append(np.broadcast_to(np.arange(1, n + 1, dtype=np.int16), rows.shape)[valid])
        movies.append(store.movie_ids[rows[valid]])
        scores.append(vals[valid])
        if progress:
            progress(len(rows))
    user_col = _cat(users, np.int32)
    return pa.table({
        "model_version": pa.repeat(pa.scalar(version, pa.string()), len(user_col)),
        "user_id": pa.array(user_col, pa.int32()),
        "rank": pa.array(_cat(ranks, np.int16), pa.int16()),
        "movie_id": pa.array(_cat(movies, np.int32), pa.int32()),
        "score": pa.array(_cat(scores, np.float32), pa.float32()),
    })


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def swap_in(url: str, table: pa.Table) -> int:
    """COPY into a fresh table, key it, and swap it for ml.user_recommendations in one transaction."""
    with bulk.transaction(url) as conn:
        return bulk.replace_table(conn, "ml", "user_recommendations", table, ["user_id", "rank"], like_existing=True)


def recommend_all(url: str, n: int = 10, progress: Progress | None = None, force: bool = False) -> RecommendationRun:
    """Top n for every user with features, from the servable embeddings; skips if already current."""
    version = PostgresStateLoader(url).servable_version()
    if version is None:
        return RecommendationRun("", 0, 0, 0.0, skipped="no movie embeddings yet")
    if not force and current_batch_version(url) == version:
        return RecommendationRun(version, 0, 0, 0.0, skipped="recommendations already use this version")
    start = time.perf_counter()
    store = embeddings.load(url, version)
    rated = read_rated(url)
    user_ids, queries = user_queries(url, version, store, rated)
    table = top_n_table(version, user_ids, store, queries, seen_rows(rated, user_ids, store), n, progress)
    rows = swap_in(url, table)
    return RecommendationRun(version, len(user_ids), rows, time.perf_counter() - start)
