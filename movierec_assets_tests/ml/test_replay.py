"""Protocol A's incremental replay (`evaluate.Replay`): the day-d features folded in day by day equal
a full recompute over every rating before day d, and re-embedding only the changed movies gives
the same vectors as embedding every movie."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from movierec_assets.ml import evaluate, feature_io
from movierec_assets.ml.pipeline import FeatureMatrices


def _start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def _replay_days(ds: evaluate.Dataset) -> tuple[list[date], pl.DataFrame, pl.DataFrame]:
    """Protocol A's evaluated days after the cutoff: some consecutive, some with gaps."""
    from movierec_assets.movielens.split import compute_split

    cutoff = compute_split(ds.ratings.lazy()).cutoff_day
    future = ds.ratings.filter(pl.col("rated_at").dt.date() > cutoff)
    first_day = ds.ratings.group_by("user_id").agg(pl.col("rated_at").min().dt.date().alias("first"))
    days = evaluate._eval_days(future, first_day, 0)
    picked = days[:4] + days[len(days) // 2 : len(days) // 2 + 2] + days[-3:]
    return sorted(set(picked)), future, first_day


def assert_same_features(got: pl.DataFrame, want: pl.DataFrame, key: str) -> None:
    """Same ids in the same order; every column exactly equal (all are computed from the same
    exact integer sums), checked as |difference| <= 1e-12 first to report the size of any gap."""
    assert got.columns == want.columns and got[key].equals(want[key])
    for col in got.columns:
        a, b = got[col].cast(pl.Float64).to_numpy(), want[col].cast(pl.Float64).to_numpy()
        assert np.allclose(a, b, rtol=0.0, atol=1e-12), col
    assert got.equals(want)


def test_replay_features_equal_a_full_recompute_every_day(ml_small: Path) -> None:
    ds = evaluate.load_dataset(ml_small)
    days, future, first_day = _replay_days(ds)
    replay = evaluate.Replay(ds, None, pl.DataFrame())
    for day in days:
        start = _start(day)
        known = future.filter(pl.col("rated_at").dt.date() == day).join(
            first_day.filter(pl.col("first") < day), on="user_id", how="semi")
        users = known.select("user_id").unique()
        prior = replay.prior(start)
        expected_prior = ds.ratings.filter(pl.col("rated_at") < start)
        assert prior.equals(expected_prior) and replay.state.rows == prior.height
        active = prior.join(users, on="user_id", how="semi")
        as_of = start - timedelta(microseconds=1)
        got_users, got_movies = replay.frames(start, users)
        assert got_users.height == users.height > 0
        assert_same_features(got_users, evaluate.features_as_of(ds, active, as_of)[0], "user_id")
        assert_same_features(got_movies, evaluate.features_as_of(ds, prior, as_of)[1], "movie_id")
    with pytest.raises(ValueError, match="in order"):
        replay.prior(_start(days[0]))


class _Tower:
    """A row-wise numpy stand-in for a Keras tower (features + ids -> vectors)."""

    def __init__(self, width: int, seed: int) -> None:
        self.inputs = [None, None]
        self.w = np.random.default_rng(seed).normal(size=(width, 4)).astype(np.float32)

    def __call__(self, x: list[np.ndarray], training: bool = False) -> np.ndarray:
        return np.tanh(x[0] @ self.w + (x[1] % 7)[:, None].astype(np.float32))


class _Model:
    uses_history = False

    def __init__(self, user_width: int, movie_width: int) -> None:
        self.user_net, self.movie_net = _Tower(user_width, 1), _Tower(movie_width, 2)
        self.rank_weights = np.linspace(-1, 1, movie_width).astype(np.float32)


def test_replay_reembeds_only_changed_movies_and_matches_embedding_all(tmp_path: Path) -> None:
    from movierec_assets_tests.ml.tiny_movielens import write_tiny_movielens

    ds = evaluate.load_dataset(write_tiny_movielens(tmp_path / "tiny"))
    users_df, movies_df = evaluate.features_as_of(ds, ds.ratings, None)
    stats = feature_io.stats_from_frames(users_df, movies_df)
    fm = feature_io.matrices(users_df, movies_df, stats)
    model: Any = _Model(fm.user_matrix.shape[1], fm.movie_matrix.shape[1])
    replay = evaluate.Replay(ds, model, stats)
    bumped = fm.movie_matrix.copy()
    bumped[[1, 4]] += 0.5  # two movies' features change
    for matrix, changed in ((fm.movie_matrix, len(fm.movie_ids)), (fm.movie_matrix, 0), (bumped, 2)):
        day = FeatureMatrices(fm.user_ids, fm.user_matrix, fm.movie_ids, matrix)
        got = replay.embed(day, ds.ratings)
        want = evaluate.embeddings(model, day, prior=ds.ratings)
        assert replay.changed[-1] == changed
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w)
