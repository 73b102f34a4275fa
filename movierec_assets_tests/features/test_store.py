"""Features over the real PostgreSQL: ml-latest-small invariants, swaps, scaling stats, assets."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from movierec_assets.assets.features import feature_tables, scaling_stats
from movierec_assets.db import bulk
from movierec_assets.features import (
    compute_from_database,
    compute_movie_features,
    compute_user_features,
    load_scaling_stats,
    movie_feature_columns,
    read_feature_tables,
    user_feature_columns,
)
from movierec_assets.features.store import swap_table
from movierec_assets.movielens.source import read_movies, read_ratings, read_tags
from movierec_assets.resources import PostgresResource
from movierec_assets_tests.features import handmade as hm
from movierec_assets_tests.features.dbload import load_movielens


@pytest.fixture(scope="module")
def small(ml_small: Path) -> dict[str, pl.DataFrame]:
    return {"ratings": read_ratings(ml_small), "movies": read_movies(ml_small), "tags": read_tags(ml_small)}


def _finite(frame: pl.DataFrame) -> bool:
    values = frame.drop(frame.columns[0]).to_numpy()
    return bool(np.isfinite(values).all())


def test_ml_small_from_database(pg_url: str, small: dict[str, pl.DataFrame]) -> None:
    load_movielens(pg_url, small["ratings"], small["movies"], small["tags"])
    frames = compute_from_database(pg_url)
    assert frames.users.height == 610 and frames.users["user_id"].n_unique() == 610
    assert frames.movies.height == 9742 and frames.movies["movie_id"].n_unique() == 9742
    assert _finite(frames.users) and _finite(frames.movies)
    assert frames.users.null_count().sum_horizontal().item() == 0
    # the database path (two streams, batches) equals the pure in-memory computation exactly
    ratings, movies, tags = small["ratings"].lazy(), small["movies"].lazy(), small["tags"].lazy()
    assert frames.users.equals(compute_user_features(ratings, movies))
    assert frames.movies.equals(compute_movie_features(ratings, movies, tags))
    shares = frames.users.select(pl.sum_horizontal(pl.col("^genre_share_.*$")) >= 1.0 - 1e-9)
    assert shares.to_series().all()  # every rating has a genre or "(no genres listed)"


def test_assets_write_tables_and_scaling_stats(pg_url: str, small: dict[str, pl.DataFrame]) -> None:
    load_movielens(pg_url, small["ratings"], small["movies"], small["tags"])
    result = dg.materialize([feature_tables, scaling_stats], resources={"postgres": PostgresResource()})
    assert result.success
    meta = result.asset_materializations_for_node("feature_tables")
    by_key = {m.asset_key.to_user_string(): m.metadata for m in meta}
    assert by_key["user_features"]["dagster/row_count"].value == 610
    assert by_key["movie_features"]["dagster/row_count"].value == 9742
    assert by_key["movie_features"]["dagster/table_name"].value == "features.movie_features"
    schema = by_key["user_features"]["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == ["user_id", *user_feature_columns()]
    assert "| mean_rating |" in by_key["user_features"]["distributions"].value
    assert {"read_aggregate_seconds", "finalize_seconds", "write_seconds"} <= set(by_key["user_features"])

    users, movies = read_feature_tables(pg_url)
    assert users.columns == ["user_id", *user_feature_columns()] and users.height == 610
    assert movies.columns == ["movie_id", *movie_feature_columns()] and movies.height == 9742
    stats = load_scaling_stats(pg_url)
    assert stats.height == len(user_feature_columns()) + len(movie_feature_columns())
    for table, frame in (("user_features", users), ("movie_features", movies)):
        got = stats.filter(pl.col("table_name") == table)
        for column, mean, std in got.select("column_name", "mean", "std").iter_rows():
            values = frame[column].to_numpy()
            assert mean == pytest.approx(values.mean(), rel=1e-9, abs=1e-12), column
            assert std == pytest.approx(values.std(), rel=1e-9, abs=1e-12), column


def test_swap_keeps_the_old_table_when_the_build_fails(pg_url: str) -> None:
    load_movielens(pg_url, hm.ratings(), hm.movies(), hm.tags())
    frames = compute_from_database(pg_url)
    swap_table(pg_url, "user_features", frames.users, "user_id")
    broken = pl.concat([frames.users, frames.users.head(1)])  # duplicate key: the primary key fails
    with pytest.raises(Exception, match="(?i)duplicate|unique"):
        swap_table(pg_url, "user_features", broken, "user_id")
    users, _ = read_feature_tables(pg_url)
    assert users.equals(frames.users)
    leftovers = bulk.read_polars(
        pg_url, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'features' AND tablename LIKE '%__build_%'"
    )
    assert leftovers["n"][0] == 0


def test_as_of_from_database(pg_url: str) -> None:
    load_movielens(pg_url, hm.ratings(), hm.movies(), hm.tags())
    as_of = hm.day(160)
    frames = compute_from_database(pg_url, as_of=as_of)
    expected_users = compute_user_features(hm.ratings().lazy(), hm.movies().lazy(), as_of=as_of)
    assert frames.users.equals(expected_users)
    assert frames.movies.equals(compute_movie_features(hm.ratings().lazy(), hm.movies().lazy(), hm.tags().lazy(), as_of))
    assert frames.users.filter(pl.col("user_id") == 2)["mean_rating"].item() == 2.0  # the day-190 rating is out


def test_injected_days_from_database_equal_the_incremental_state(pg_url: str, small: dict[str, pl.DataFrame]) -> None:
    from movierec_assets.features.incremental import IncrementalFeatures
    from movierec_assets_tests.features.dbload import append_day

    ratings = small["ratings"]
    day = pl.col("rated_at").dt.date()
    days = ratings.select(day.unique().sort()).to_series()[-3:].to_list()
    history = ratings.filter(day < days[0])
    load_movielens(pg_url, history, small["movies"], small["tags"])
    state = IncrementalFeatures(small["movies"], small["tags"])
    state.add(history)
    for d in days:  # inject three days, as the daily partitions do
        rows = ratings.filter(day == d)
        append_day(pg_url, rows, d.isoformat())
        state.add(rows)
    frames = compute_from_database(pg_url)
    assert state.rows == ratings.height
    assert frames.users.equals(state.user_features())
    assert frames.movies.equals(state.movie_features())
