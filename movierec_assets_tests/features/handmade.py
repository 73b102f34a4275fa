"""A tiny hand-made catalogue and ratings table whose features are worked out by hand in the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

DAY0 = datetime(2020, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


def movies() -> pl.DataFrame:
    """1990 Action|Comedy; 2000 Drama; no year and no genres; 2010 Action, never rated."""
    return pl.DataFrame(
        {
            "movie_id": [1, 2, 3, 4],
            "title": ["A (1990)", "B (2000)", "C", "D (2010)"],
            "year": [1990, 2000, None, 2010],
            "genres": [["Action", "Comedy"], ["Drama"], [], ["Action"]],
        },
        schema={"movie_id": pl.Int32, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)},
    )


# (user, movie, stars, day): movie 99 is not in the catalogue; day 200 is the latest rating.
ROWS = [
    (1, 1, 4.0, 0),
    (1, 2, 3.0, 100),
    (1, 3, 5.0, 150),
    (2, 1, 2.0, 120),
    (2, 2, 4.5, 190),
    (3, 2, 1.0, 200),
    (3, 99, 2.0, 50),
]


def ratings(rows: list[tuple[int, int, float, float]] = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "movie_id": [r[1] for r in rows],
            "rating": [r[2] for r in rows],
            "rated_at": [day(r[3]) for r in rows],
        },
        schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32, "rated_at": pl.Datetime("us", "UTC")},
    )


def tags() -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [1, 2, 3], "movie_id": [1, 1, 3], "tag": ["x", "y", "z"], "tagged_at": [day(10), day(180), day(5)]},
        schema={"user_id": pl.Int32, "movie_id": pl.Int32, "tag": pl.String, "tagged_at": pl.Datetime("us", "UTC")},
    )
