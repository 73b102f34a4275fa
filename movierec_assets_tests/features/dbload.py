"""Put input rows straight into movielens.* (bulk COPY), independent of the ingestion code."""

from __future__ import annotations

import polars as pl

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect


def load_movielens(url: str, ratings: pl.DataFrame, movies: pl.DataFrame, tags: pl.DataFrame | None = None) -> None:
    """Replace movielens.ratings/movies/tags with these frames, in one transaction."""
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.movies, movielens.tags")
        bulk.ingest(conn, "movielens", "movies", movies.select("movie_id", "title", "year", "genres"))
        bulk.ingest(conn, "movielens", "ratings", ratings.select("user_id", "movie_id", "rating", "rated_at"))
        if tags is not None:
            bulk.ingest(conn, "movielens", "tags", tags.select("user_id", "movie_id", "tag", "tagged_at"))
        conn.commit()


def append_day(url: str, ratings: pl.DataFrame, day: str) -> None:
    """Add one partition day's rows (partition_day set), as the daily partitions do."""
    rows = ratings.select("user_id", "movie_id", "rating", "rated_at").with_columns(
        pl.lit(day).str.to_date().alias("partition_day")
    )
    with adbc_connect(url) as conn:
        bulk.ingest(conn, "movielens", "ratings", rows)
        conn.commit()
