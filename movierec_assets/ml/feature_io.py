"""Feature frames -> the scaled FeatureMatrices the towers consume, through the features package.

Scaling always goes through the shared `movierec_assets.features.scale`; the stats a model was
trained with are saved next to it (`scaling_stats.parquet`), so inference after later feature
refreshes scales exactly as training did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from movierec_assets import features
from movierec_assets.ml.pipeline import FeatureMatrices

USER_TABLE = "user_features"
MOVIE_TABLE = "movie_features"
STATS_FILE = "scaling_stats.parquet"


def stats_from_frames(users: pl.DataFrame, movies: pl.DataFrame) -> pl.DataFrame:
    """Scaling stats from feature frames, exactly as the `scaling_stats` asset computes them."""
    return features.compute_scaling_stats(users, movies)


def scale_users(users: pl.DataFrame, stats: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(sorted user ids, scaled matrix) for a user_features frame."""
    users = users.sort("user_id")
    return users["user_id"].to_numpy().astype(np.int32), features.scale(users, stats, USER_TABLE)


def scale_movies(movies: pl.DataFrame, stats: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    movies = movies.sort("movie_id")
    return movies["movie_id"].to_numpy().astype(np.int32), features.scale(movies, stats, MOVIE_TABLE)


def matrices(users: pl.DataFrame, movies: pl.DataFrame, stats: pl.DataFrame) -> FeatureMatrices:
    uid, um = scale_users(users, stats)
    mid, mm = scale_movies(movies, stats)
    return FeatureMatrices(uid, np.ascontiguousarray(um, np.float32), mid, np.ascontiguousarray(mm, np.float32))


def load_feature_tables(url: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(user_features, movie_features, scaling_stats) as stored by the features assets."""
    users, movies = features.read_feature_tables(url)
    return users, movies, features.load_scaling_stats(url)


def save_stats(stats: pl.DataFrame, version_dir: Path) -> Path:
    path = version_dir / STATS_FILE
    stats.write_parquet(path)
    return path


def load_stats(version_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(Path(version_dir) / STATS_FILE)
