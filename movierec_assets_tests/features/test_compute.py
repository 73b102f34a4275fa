"""Exact feature values on the hand-made table (worked out by hand below), as_of, chunking, scaling."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from movierec_assets.features import (
    compute_movie_features,
    compute_scaling_stats,
    compute_user_features,
    movie_feature_columns,
    scale,
    user_feature_columns,
)
from movierec_assets.features.compute import movie_attributes, new_accumulator, user_features_from_sums
from movierec_assets_tests.features import handmade as hm

GLOBAL_MEAN = (4 + 3 + 5 + 2 + 4.5 + 1 + 2) / 7


def _row(frame: pl.DataFrame, key: str, value: int) -> dict[str, float]:
    rows = frame.filter(pl.col(key) == value).to_dicts()
    assert len(rows) == 1, f"{key}={value}: {len(rows)} rows"
    return rows[0]


def _users(as_of=None) -> pl.DataFrame:
    return compute_user_features(hm.ratings().lazy(), hm.movies().lazy(), as_of=as_of)


def _movies(as_of=None) -> pl.DataFrame:
    return compute_movie_features(hm.ratings().lazy(), hm.movies().lazy(), hm.tags().lazy(), as_of=as_of)


def test_user_columns_and_rows() -> None:
    users = _users()
    assert users.columns == ["user_id", *user_feature_columns()]
    assert users["user_id"].to_list() == [1, 2, 3]
    assert len(user_feature_columns()) == 4 + 20 + 20 + 1


def test_user_1_by_hand() -> None:
    u = _row(_users(), "user_id", 1)
    assert u["log_count"] == pytest.approx(math.log(4))
    assert u["mean_rating"] == pytest.approx(4.0)
    assert u["std_rating"] == pytest.approx(1.0)  # sample std of 4, 3, 5
    assert u["days_since_last"] == pytest.approx(50.0)  # last at day 150, latest rating day 200
    # one rating per genre: shrunk toward the user's mean 4.0 with 5 pseudo-ratings
    assert u["genre_mean_action"] == pytest.approx((4.0 + 5 * 4.0) / 6)
    assert u["genre_mean_drama"] == pytest.approx((3.0 + 5 * 4.0) / 6)
    assert u["genre_mean_no_genres_listed"] == pytest.approx((5.0 + 5 * 4.0) / 6)
    assert u["genre_mean_western"] == pytest.approx(4.0)  # no ratings: exactly the user's mean
    for genre in ("action", "comedy", "drama", "no_genres_listed"):
        assert u[f"genre_share_{genre}"] == pytest.approx(1 / 3)
    assert u["genre_share_horror"] == 0.0
    assert u["mean_year"] == pytest.approx((1990 + 2000 + 2000) / 3)  # movie 3's year is the median


def test_users_2_and_3_by_hand() -> None:
    users = _users()
    u2 = _row(users, "user_id", 2)
    assert u2["mean_rating"] == pytest.approx(3.25)
    assert u2["std_rating"] == pytest.approx(2.5 / math.sqrt(2))
    assert u2["days_since_last"] == pytest.approx(10.0)
    assert u2["genre_mean_action"] == pytest.approx((2.0 + 5 * 3.25) / 6)
    assert u2["genre_mean_drama"] == pytest.approx((4.5 + 5 * 3.25) / 6)
    assert u2["genre_share_action"] == pytest.approx(0.5)
    assert u2["mean_year"] == pytest.approx(1995.0)
    u3 = _row(users, "user_id", 3)  # one rating of a movie missing from the catalogue
    assert u3["log_count"] == pytest.approx(math.log(3))
    assert u3["mean_rating"] == pytest.approx(1.5)
    assert u3["days_since_last"] == 0.0
    assert u3["genre_share_drama"] == pytest.approx(0.5)
    assert u3["genre_share_no_genres_listed"] == 0.0  # unknown movie: no genre at all
    assert u3["mean_year"] == pytest.approx(2000.0)


def test_movies_by_hand_including_cold_start() -> None:
    movies = _movies()
    assert movies.columns == ["movie_id", *movie_feature_columns()]
    assert movies["movie_id"].to_list() == [1, 2, 3, 4]  # movie 99 is not in the catalogue
    m1 = _row(movies, "movie_id", 1)
    assert (m1["year"], m1["year_missing"], m1["genre_action"], m1["genre_comedy"], m1["genre_drama"]) == (
        1990.0, 0.0, 1.0, 1.0, 0.0,
    )
    assert m1["log_count"] == pytest.approx(math.log(3))
    assert m1["shrunk_mean"] == pytest.approx((6.0 + 10 * GLOBAL_MEAN) / 12)
    assert m1["std_rating"] == pytest.approx(math.sqrt(2))
    assert m1["log_count_90d"] == pytest.approx(math.log(2))  # day 120 is inside (110, 200], day 0 is not
    assert m1["log_tag_count"] == pytest.approx(math.log(3))
    m2 = _row(movies, "movie_id", 2)
    assert m2["shrunk_mean"] == pytest.approx((8.5 + 10 * GLOBAL_MEAN) / 13)
    assert m2["std_rating"] == pytest.approx(math.sqrt(((3 - 8.5 / 3) ** 2 + (4.5 - 8.5 / 3) ** 2 + (1 - 8.5 / 3) ** 2) / 2))
    assert m2["log_count_90d"] == pytest.approx(math.log(3))  # days 190 and 200; day 100 is out
    m3 = _row(movies, "movie_id", 3)
    assert (m3["year"], m3["year_missing"], m3["genre_no_genres_listed"], m3["std_rating"]) == (2000.0, 1.0, 1.0, 0.0)
    m4 = _row(movies, "movie_id", 4)  # never rated: still a row, with the prior
    assert (m4["log_count"], m4["std_rating"], m4["log_count_90d"], m4["log_tag_count"]) == (0.0, 0.0, 0.0, 0.0)
    assert m4["shrunk_mean"] == pytest.approx(GLOBAL_MEAN)


def test_as_of_excludes_later_ratings_and_tags() -> None:
    as_of = hm.day(160)
    users = _users(as_of)
    u1, u2, u3 = (_row(users, "user_id", i) for i in (1, 2, 3))
    assert u1["days_since_last"] == pytest.approx(10.0)  # "now" is as_of, not the latest rating
    assert (u2["log_count"], u2["mean_rating"], u2["std_rating"]) == (pytest.approx(math.log(2)), 2.0, 0.0)
    assert u2["days_since_last"] == pytest.approx(40.0)
    assert (u3["mean_rating"], u3["days_since_last"]) == (2.0, pytest.approx(110.0))
    movies = _movies(as_of)
    m2 = _row(movies, "movie_id", 2)
    as_of_mean = (4 + 3 + 5 + 2 + 2) / 5
    assert m2["shrunk_mean"] == pytest.approx((3.0 + 10 * as_of_mean) / 11)
    assert m2["log_count_90d"] == pytest.approx(math.log(2))  # window (70, 160]: day 100 only
    assert _row(movies, "movie_id", 1)["log_tag_count"] == pytest.approx(math.log(2))  # day-180 tag is later
    before_any = _users(hm.day(-1))
    assert before_any.height == 0


def test_as_of_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _users(hm.day(160).replace(tzinfo=None))


def test_chunked_accumulation_equals_one_batch() -> None:
    ratings = hm.ratings().sample(fraction=1.0, shuffle=True, seed=3)
    attrs = movie_attributes(hm.movies().lazy()).collect()
    parts = [new_accumulator(attrs) for _ in range(3)]
    for i, part in enumerate(parts):
        part.add(ratings[i::3])
    merged = parts[0].merge(parts[1]).merge(parts[2])
    whole = _users()
    assert user_features_from_sums(merged.user_sums(), merged.latest()).equals(whole)


def test_scale_standardises_in_canonical_order() -> None:
    users, movies = _users(), _movies()
    stats = compute_scaling_stats(users, movies)
    assert stats.height == len(user_feature_columns()) + len(movie_feature_columns())
    x = scale(users, stats, "user_features")
    assert x.dtype == np.float32 and x.shape == (3, len(user_feature_columns()))
    mean_col = user_feature_columns().index("mean_rating")
    raw = users["mean_rating"].to_numpy()
    assert np.allclose(x[:, mean_col], (raw - raw.mean()) / raw.std(), atol=1e-6)
    horror = user_feature_columns().index("genre_share_horror")  # constant 0: std 0 scales by 1
    assert np.all(x[:, horror] == 0.0)
    shuffled = movies.select(["movie_id", *reversed(movie_feature_columns())])
    assert np.array_equal(scale(shuffled, stats, "features.movie_features"), scale(movies, stats, "movie_features"))


def test_scale_refuses_other_versions_and_missing_columns() -> None:
    users, movies = _users(), _movies()
    stats = compute_scaling_stats(users, movies)
    with pytest.raises(ValueError, match="scaling stats are for"):
        scale(users, stats.with_columns(pl.lit("old").alias("feature_set_version")), "user_features")
    with pytest.raises(ValueError, match="lack columns"):
        scale(users, stats.filter(pl.col("column_name") != "mean_year"), "user_features")
    with pytest.raises(ValueError, match="unknown feature table"):
        scale(users, stats, "users")


def test_incremental_days_equal_a_full_recompute(ml_small) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from movierec_assets.features.incremental import IncrementalFeatures
    from movierec_assets.movielens.source import read_movies, read_ratings, read_tags

    ratings, movies, tags = read_ratings(ml_small), read_movies(ml_small), read_tags(ml_small)
    day = pl.col("rated_at").dt.date()
    days = ratings.select(day.unique().sort()).to_series()[-6:-1].to_list()  # five late days with ratings
    state = IncrementalFeatures(movies, tags)
    state.add(ratings.filter(day < days[0]))
    for d in days:
        state.add(ratings.filter(day == d))
        as_of = hm.DAY0.replace(year=d.year, month=d.month, day=d.day) + timedelta(days=1) - timedelta(microseconds=1)
        known = ratings.filter(day <= d).lazy()
        assert state.user_features(as_of).equals(compute_user_features(known, movies.lazy(), as_of=as_of))
        assert state.movie_features(as_of).equals(compute_movie_features(known, movies.lazy(), tags.lazy(), as_of=as_of))
    with pytest.raises(ValueError, match="leak"):
        state.user_features(hm.DAY0.replace(year=days[0].year, month=days[0].month, day=days[0].day))
