"""Training data as compact arrays, and the tf.data input pipeline that gathers features by index.

Ratings live as three arrays (int32 user row, int32 movie row, float32 rating: 12 bytes per
rating); feature matrices live once as tensors, and each batch gathers its rows by index. A
ratings-by-features joined matrix is never built. When the ratings exceed a memory budget, they are
streamed from PostgreSQL in chunks (Arrow record batches), shuffled within each chunk.

TensorFlow is imported inside the functions that build datasets, so the array helpers stay light.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect

RATINGS_SQL = (
    "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings"
    " WHERE rated_at < $1"
)
RATINGS_ALL_SQL = "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings"
BYTES_PER_RATING = 12


@dataclass(frozen=True)
class FeatureMatrices:
    """Scaled features in row order; `*_ids` give the entity id of each row (sorted ascending)."""

    user_ids: np.ndarray
    user_matrix: np.ndarray
    movie_ids: np.ndarray
    movie_matrix: np.ndarray

    def __post_init__(self) -> None:
        for ids, mat, name in ((self.user_ids, self.user_matrix, "user"), (self.movie_ids, self.movie_matrix, "movie")):
            if len(ids) != len(mat):
                raise ValueError(f"{name}: {len(ids)} ids but {len(mat)} feature rows")
            if len(ids) > 1 and not np.all(np.diff(ids) > 0):
                raise ValueError(f"{name} ids must be unique and sorted ascending")
            if not np.isfinite(mat).all():
                raise ValueError(f"{name} feature matrix holds NaN or inf")


@dataclass
class RatingArrays:
    """Ratings as row indices into FeatureMatrices, sorted by time (oldest first)."""

    user_idx: np.ndarray  # int32
    movie_idx: np.ndarray  # int32
    rating: np.ndarray  # float32
    rated_at: np.ndarray  # int64 microseconds since epoch (UTC)
    dropped: int = 0  # ratings whose user or movie has no feature row

    def __len__(self) -> int:
        return len(self.rating)

    def take(self, sel: np.ndarray | slice) -> RatingArrays:
        return RatingArrays(self.user_idx[sel], self.movie_idx[sel], self.rating[sel], self.rated_at[sel])

    def time_split(self, val_fraction: float) -> tuple[RatingArrays, RatingArrays]:
        """Oldest (1 - val_fraction) for training, newest val_fraction for validation."""
        cut = int(round(len(self) * (1.0 - val_fraction)))
        return self.take(slice(0, cut)), self.take(slice(cut, None))


def index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in `sorted_ids`, or -1 when absent (vectorised binary search)."""
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    found = (len(sorted_ids) > 0) & (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
    return np.where(found, pos, -1).astype(np.int32)


def arrays_from_frame(ratings: pl.DataFrame, features: FeatureMatrices) -> RatingArrays:
    """Ratings frame (contract dtypes) -> time-sorted index arrays; unknown ids are dropped and counted."""
    df = ratings.sort("rated_at", "user_id", "movie_id")
    u = index_of(features.user_ids, df["user_id"].to_numpy())
    m = index_of(features.movie_ids, df["movie_id"].to_numpy())
    keep = (u >= 0) & (m >= 0)
    ts = df["rated_at"].dt.epoch("us").to_numpy()
    return RatingArrays(
        user_idx=u[keep],
        movie_idx=m[keep],
        rating=df["rating"].to_numpy().astype(np.float32)[keep],
        rated_at=ts[keep].astype(np.int64),
        dropped=int((~keep).sum()),
    )


def read_ratings(url: str, before: datetime | None = None) -> pl.DataFrame:
    """Ratings (history plus injected partitions) with rated_at < before, through COPY BINARY."""
    if before is None:
        return bulk.read_polars(url, RATINGS_ALL_SQL)
    return bulk.read_polars(url, RATINGS_SQL, [before])


def count_ratings(url: str, before: datetime | None = None) -> int:
    if before is None:
        return int(bulk.read_polars(url, "SELECT count(*) AS n FROM movielens.ratings")["n"][0])
    return int(bulk.read_polars(url, "SELECT count(*) AS n FROM movielens.ratings WHERE rated_at < $1", [before])["n"][0])


def needs_streaming(n_ratings: int, memory_budget_bytes: int) -> bool:
    return n_ratings * BYTES_PER_RATING > memory_budget_bytes


def movie_log_frequency(ratings: RatingArrays, n_movies: int) -> np.ndarray:
    """log q(movie): each movie's share of the training ratings (+1 smoothing), for logQ correction."""
    counts = np.bincount(ratings.movie_idx, minlength=n_movies).astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)


def model_inputs(features: FeatureMatrices, user_rows: np.ndarray, movie_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Numpy inputs for `model.predict` on explicit (user row, movie row) pairs (evaluation)."""
    return {
        "user_features": features.user_matrix[user_rows],
        "movie_features": features.movie_matrix[movie_rows],
        "user_id": features.user_ids[user_rows].astype(np.int32),
        "movie_id": features.movie_ids[movie_rows].astype(np.int32),
    }


@dataclass(frozen=True)
class TrainingExtras:
    """What training batches carry beyond (features, rating): each event's causal history (a
    `history.CausalIndex` in the dataset's event order, windows of `history_len`) and
    `uniform_negatives` random movies per batch for the sampled softmax."""

    history: Any = None  # history.CausalIndex | None
    history_len: int = 0
    uniform_negatives: int = 0
    seed: int = 0
    # The window ends up to this share of the user's earlier ratings before the event (uniform at
    # random per example): evaluation and serving predict several future ratings from one history.
    history_gap: float = 0.0


class _Gather:
    """Holds the feature matrices as tensors and gathers one batch of rows by index."""

    def __init__(self, features: FeatureMatrices, movie_logq: np.ndarray | None = None,
                 extras: TrainingExtras | None = None) -> None:
        import tensorflow as tf  # TensorFlow: only when a tf.data pipeline is built, never at import

        self.tf = tf
        self.movie_logq = None if movie_logq is None else tf.constant(movie_logq, tf.float32)
        self.user_matrix = tf.constant(features.user_matrix, tf.float32)
        self.movie_matrix = tf.constant(features.movie_matrix, tf.float32)
        self.user_ids = tf.constant(features.user_ids.astype(np.int32))
        self.movie_ids = tf.constant(features.movie_ids.astype(np.int32))
        self.extras = extras or TrainingExtras()
        h = self.extras.history
        if h is not None and self.extras.history_len > 0:
            self.hist = tuple(tf.constant(a) for a in (h.seq_movie_ids, h.seq_ratings, h.pos, h.start))

    def __call__(self, u: Any, m: Any, r: Any, events: Any = None) -> tuple[dict[str, Any], Any]:
        tf = self.tf
        x = {
            "user_features": tf.gather(self.user_matrix, u),
            "movie_features": tf.gather(self.movie_matrix, m),
            "user_id": tf.gather(self.user_ids, u),
            "movie_id": tf.gather(self.movie_ids, m),
        }
        if events is not None and hasattr(self, "hist"):
            x.update(self._histories(events))
        if self.movie_logq is not None:  # training batches only: see two_tower.TRAIN_*
            x["train_rating"] = r
            x["train_movie_logq"] = tf.gather(self.movie_logq, m)
            k = self.extras.uniform_negatives
            if k > 0:
                n_movies = tf.shape(self.movie_ids)[0]
                neg = tf.random.uniform((k,), 0, n_movies, dtype=tf.int32)
                x["train_neg_features"] = tf.gather(self.movie_matrix, neg)
                x["train_neg_ids"] = tf.gather(self.movie_ids, neg)
                x["train_neg_logq"] = tf.fill((k,), tf.math.log(k / tf.cast(n_movies, tf.float32)))
        return x, r

    def _histories(self, events: Any) -> dict[str, Any]:
        """history.CausalIndex.windows, in TensorFlow: the N ratings before each event (or before
        the gap), newest first."""
        tf = self.tf
        seq_m, seq_r, pos, start = self.hist
        p, s = tf.gather(pos, events), tf.gather(start, events)
        if self.extras.history_gap > 0:
            share = tf.random.uniform(tf.shape(p), 0.0, self.extras.history_gap)
            p = p - tf.cast(tf.floor(share * tf.cast(p - s, tf.float32)), tf.int32)
        idx = p[:, None] - 1 - tf.range(self.extras.history_len, dtype=tf.int32)[None, :]
        valid = idx >= s[:, None]
        safe = tf.where(valid, idx, 0)
        return {"history_movie_ids": tf.where(valid, tf.gather(seq_m, safe), -1),
                "history_ratings": tf.where(valid, tf.gather(seq_r, safe), 0.0)}


def make_dataset(
    ratings: RatingArrays,
    features: FeatureMatrices,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    start_epoch: int = 0,
    movie_logq: np.ndarray | None = None,
    extras: TrainingExtras | None = None,
) -> tuple[Any, int]:
    """(dataset, steps_per_epoch). With shuffle, the dataset repeats forever, one fresh permutation
    per epoch (seeded by (seed, epoch), so a resumed run continues the same sequence); pass
    `steps_per_epoch` to fit. Without shuffle, one ordered pass (for validation).
    `movie_logq` adds the retrieval-loss inputs (validation too, so val_loss includes it);
    `extras` adds causal histories and uniform negatives.
    """
    import tensorflow as tf  # TensorFlow: only when a tf.data pipeline is built, never at import

    n = len(ratings)
    if n == 0:
        raise ValueError("no ratings to train on")
    steps = -(-n // batch_size)
    u = tf.constant(ratings.user_idx, tf.int32)
    m = tf.constant(ratings.movie_idx, tf.int32)
    r = tf.constant(ratings.rating, tf.float32)
    gather = _Gather(features, movie_logq, extras)

    def batch_of(idx: Any) -> tuple[dict[str, Any], Any]:
        idx = tf.cast(idx, tf.int32)
        return gather(tf.gather(u, idx), tf.gather(m, idx), tf.gather(r, idx), idx)

    if not shuffle:
        ds = tf.data.Dataset.range(steps).map(
            lambda i: tf.range(i * batch_size, tf.minimum((i + 1) * batch_size, n))
        )
        return ds.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE), steps

    def epoch_batches(epoch: Any) -> Any:
        perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]))
        return tf.data.Dataset.range(steps).map(
            lambda i: tf.gather(perm, tf.range(i * batch_size, tf.minimum((i + 1) * batch_size, n)))
        )

    ds = tf.data.Dataset.counter(start=start_epoch).flat_map(epoch_batches)
    ds = ds.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE), steps


def stream_chunks(
    url: str,
    features: FeatureMatrices,
    before: datetime | None,
    chunk_rows: int,
    batch_size: int,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Shuffled (user_idx, movie_idx, rating) chunks read through one streaming Arrow cursor.

    Memory is bounded by `chunk_rows`; each emitted chunk is a multiple of `batch_size` (except
    the last), so the step count per epoch is exact. Work is per chunk, never per row.
    """
    rng = np.random.default_rng(seed)
    chunk_rows = max(batch_size, chunk_rows - chunk_rows % batch_size)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    size = 0
    sql, params = (RATINGS_SQL, [before]) if before else (RATINGS_ALL_SQL, None)
    with adbc_connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql, params) if params else cur.execute(sql)
        for batch in cur.fetch_record_batch():
            u = index_of(features.user_ids, batch.column("user_id").to_numpy())
            m = index_of(features.movie_ids, batch.column("movie_id").to_numpy())
            keep = (u >= 0) & (m >= 0)
            pending.append((u[keep], m[keep], batch.column("rating").to_numpy().astype(np.float32)[keep]))
            size += int(keep.sum())
            if size < chunk_rows:
                continue
            u_all, m_all, r_all = (np.concatenate(c) for c in zip(*pending, strict=True))
            while size >= chunk_rows:  # a record batch may hold several chunks
                perm = rng.permutation(chunk_rows)
                yield u_all[:chunk_rows][perm], m_all[:chunk_rows][perm], r_all[:chunk_rows][perm]
                u_all, m_all, r_all = u_all[chunk_rows:], m_all[chunk_rows:], r_all[chunk_rows:]
                size -= chunk_rows
            pending = [(u_all, m_all, r_all)]
    if size:
        u_all, m_all, r_all = (np.concatenate(c) for c in zip(*pending, strict=True))
        perm = rng.permutation(size)
        yield u_all[perm], m_all[perm], r_all[perm]


def make_streaming_dataset(
    url: str,
    features: FeatureMatrices,
    batch_size: int,
    before: datetime | None = None,
    chunk_rows: int = 1 << 21,
    seed: int = 0,
) -> tuple[Any, int]:
    """A bounded-memory dataset: chunks from `stream_chunks`, batched and gathered in tf.data.

    Each epoch re-reads PostgreSQL (one sequential scan) with a fresh per-epoch seed.
    """
    import tensorflow as tf  # TensorFlow: only when a tf.data pipeline is built, never at import

    n = count_ratings(url, before)
    steps = -(-n // batch_size)
    gather = _Gather(features)
    epoch = [seed]

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        epoch[0] += 1
        yield from stream_chunks(url, features, before, chunk_rows, batch_size, epoch[0])

    spec = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32))
    ds = tf.data.Dataset.from_generator(chunks, output_signature=spec)
    ds = ds.flat_map(lambda u, m, r: tf.data.Dataset.from_tensor_slices((u, m, r)).batch(batch_size))
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ds.repeat(), steps
