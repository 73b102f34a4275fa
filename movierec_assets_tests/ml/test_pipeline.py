"""Input pipeline: gather-by-index batches and the bounded-memory streaming mode (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect
from movierec_assets.ml.pipeline import (
    FeatureMatrices,
    arrays_from_frame,
    make_dataset,
    make_streaming_dataset,
    needs_streaming,
    stream_chunks,
)
from movierec_assets_tests.ml.planted import planted


def test_batches_gather_the_right_feature_rows_and_cover_each_epoch() -> None:
    features, ratings = planted(n_users=30, n_movies=20, per_user=7)
    ds, steps = make_dataset(ratings, features, batch_size=64, seed=3)
    seen = []
    for x, y in ds.take(steps):
        u = np.searchsorted(features.user_ids, x["user_id"].numpy())
        m = np.searchsorted(features.movie_ids, x["movie_id"].numpy())
        np.testing.assert_array_equal(x["user_features"].numpy(), features.user_matrix[u])
        np.testing.assert_array_equal(x["movie_features"].numpy(), features.movie_matrix[m])
        seen.append(np.stack([u, m, y.numpy()], 1))
    got = np.concatenate(seen)
    want = np.stack([ratings.user_idx, ratings.movie_idx, ratings.rating], 1)
    # One epoch = every rating exactly once, in a shuffled order.
    np.testing.assert_array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])
    assert not np.array_equal(got, want)


def _features(n_users: int, n_movies: int) -> FeatureMatrices:
    return FeatureMatrices(np.arange(1, n_users + 1, dtype=np.int32), np.ones((n_users, 3), np.float32),
                           np.arange(1, n_movies + 1, dtype=np.int32), np.ones((n_movies, 2), np.float32))


def test_streaming_mode_reads_every_rating_in_bounded_chunks(pg_url: str) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame({
        "user_id": rng.integers(1, 41, n).astype(np.int32),
        "movie_id": np.arange(n, dtype=np.int32) % 97 + 1,
        "rating": (rng.integers(1, 11, n) / 2).astype(np.float32),
        "rated_at": [t0 + timedelta(seconds=i) for i in range(n)],
    }).with_columns(pl.col("rated_at").dt.cast_time_unit("us"))
    with adbc_connect(pg_url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings")
        bulk.ingest(conn, "movielens", "ratings", frame)
        conn.commit()
    features = _features(40, 96)  # movie 97 has no feature row: its ratings are skipped
    assert needs_streaming(n, memory_budget_bytes=n * 12 - 1) and not needs_streaming(n, n * 12)
    chunks = list(stream_chunks(pg_url, features, None, chunk_rows=1000, batch_size=256, seed=1))
    sizes = [len(c[0]) for c in chunks]
    assert max(sizes) <= 1024 and all(s % 256 == 0 for s in sizes[:-1])
    got = np.concatenate([np.stack(c, 1) for c in chunks])
    want = arrays_from_frame(frame, features)
    ref = np.stack([want.user_idx, want.movie_idx, want.rating], 1)
    np.testing.assert_array_equal(got[np.lexsort(got.T)], ref[np.lexsort(ref.T)])
    ds, steps = make_streaming_dataset(pg_url, features, batch_size=512, chunk_rows=2048)
    assert steps == -(-n // 512)
    first = sum(int(y.shape[0]) for _, y in ds.take(steps))
    assert first >= len(want)
