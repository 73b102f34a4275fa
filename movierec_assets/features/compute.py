"""Feature computation, pure functions: ratings/movies/tags frames in, one row per user or movie out.

Ratings first become additive integer sums (`aggregates.Accumulator`: counts, sums of half-stars
and of their squares, per genre), so the same numbers come out whatever the row order, chunking or
number of parallel readers, and an incremental update matches a full recompute exactly. The
features are then Polars expressions over those sums (and the movie catalogue).
"""

from __future__ import annotations

import re
from datetime import datetime

import polars as pl

from movierec_assets.features.aggregates import Accumulator, MovieLookup
from movierec_assets.movielens.source import GENRES, NO_GENRES

FEATURE_SET_VERSION = "features-v1"
# Pseudo-ratings behind the shrunk means: a user's genre mean starts at their overall mean and a
# movie's mean starts at the global mean; real ratings outweigh the prior once they outnumber it.
USER_GENRE_PRIOR = 5.0
MOVIE_PRIOR = 10.0
TREND_DAYS = 90
FALLBACK_YEAR = 1995.0  # only used when no movie has a year at all
_US_PER_DAY = 86_400_000_000


def genre_slug(genre: str) -> str:
    """A column-safe name for a genre: "Sci-Fi" -> "sci_fi", "(no genres listed)" -> "no_genres_listed"."""
    return re.sub(r"[^a-z0-9]+", "_", genre.lower()).strip("_")


GENRE_SLUGS = [genre_slug(g) for g in GENRES]


def user_feature_columns() -> list[str]:
    """The user tower's numeric inputs, in their canonical order."""
    return [
        "log_count", "mean_rating", "std_rating", "days_since_last",
        *(f"genre_mean_{s}" for s in GENRE_SLUGS),
        *(f"genre_share_{s}" for s in GENRE_SLUGS),
        "mean_year",
    ]


def movie_feature_columns() -> list[str]:
    """The movie tower's numeric inputs, in their canonical order."""
    return [
        "year", "year_missing",
        *(f"genre_{s}" for s in GENRE_SLUGS),
        "log_count", "shrunk_mean", "std_rating", "log_count_90d", "log_tag_count",
    ]


# -- shared steps ---------------------------------------------------------------------------------
def as_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware, got naive {ts.isoformat()}")
    return ts


def movie_attributes(movies: pl.LazyFrame) -> pl.LazyFrame:
    """movie_id, year (median-filled), year_missing and one Boolean column per genre."""
    median = pl.col("year").median().fill_null(FALLBACK_YEAR)
    genres = pl.col("genres").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    return movies.select(
        pl.col("movie_id").cast(pl.Int32),
        pl.col("year").cast(pl.Float64).fill_null(median).alias("year"),
        pl.col("year").is_null().cast(pl.Float64).alias("year_missing"),
        *(_genre_flag(genres, g).alias(f"g_{s}") for g, s in zip(GENRES, GENRE_SLUGS, strict=True)),
    )


def _genre_flag(genres: pl.Expr, genre: str) -> pl.Expr:
    # Readers turn "(no genres listed)" into an empty list, so that indicator is "no genre at all".
    if genre == NO_GENRES:
        return (genres.list.len() == 0) | genres.list.contains(genre)
    return genres.list.contains(genre)


def std_from_sums(n: pl.Expr, s2: pl.Expr, ss2: pl.Expr) -> pl.Expr:
    """Sample std (ddof=1) in stars from half-star integer sums; 0 for fewer than 2 ratings."""
    numerator = (n * ss2 - s2 * s2).cast(pl.Float64)  # exact integer, then one float step
    var = numerator / (n * (n - 1)).cast(pl.Float64) / 4.0
    return pl.when(n >= 2).then(var.clip(lower_bound=0.0).sqrt()).otherwise(0.0)


# -- accumulation ---------------------------------------------------------------------------------
def movie_lookup(attributes: pl.DataFrame) -> MovieLookup:
    return MovieLookup.build(attributes, [f"g_{s}" for s in GENRE_SLUGS])


def new_accumulator(attributes: pl.DataFrame, as_of: datetime | None = None) -> Accumulator:
    """An empty accumulator for this catalogue; rows after `as_of` will be ignored."""
    as_of_us = None if as_of is None else to_microseconds(as_utc(as_of))
    return Accumulator(lookup=movie_lookup(attributes), trend_days=TREND_DAYS, as_of_us=as_of_us)


def accumulate(ratings: pl.LazyFrame, attributes: pl.DataFrame, as_of: datetime | None) -> Accumulator:
    acc = new_accumulator(attributes, as_of)
    acc.add(ratings.select("user_id", "movie_id", "rating", "rated_at").collect())
    return acc


def reference_us(acc: Accumulator, as_of: datetime | None) -> int | None:
    """The "now" of the features in microseconds: `as_of` when given, else the latest rating."""
    return to_microseconds(as_utc(as_of)) if as_of is not None else acc.latest()


def to_microseconds(ts: datetime) -> int:
    return int(pl.Series([ts]).cast(pl.Datetime("us", "UTC")).to_physical()[0])


# -- users ----------------------------------------------------------------------------------------
def user_features_from_sums(sums: pl.DataFrame, now_us: int | None) -> pl.DataFrame:
    """Features from per-user sums (see `Accumulator.user_sums`): the only step that sees "now"."""
    n = pl.col("n")
    mean = pl.col("s2") / n / 2.0
    k = USER_GENRE_PRIOR
    genre_means = [
        ((pl.col(f"s2_{g}") / 2.0 + k * mean) / (pl.col(f"n_{g}") + k)).alias(f"genre_mean_{s}")
        for g, s in enumerate(GENRE_SLUGS)
    ]
    shares = [(pl.col(f"n_{g}") / n).alias(f"genre_share_{s}") for g, s in enumerate(GENRE_SLUGS)]
    last_us = pl.col("last_at").dt.cast_time_unit("us").to_physical()
    since = (pl.lit(now_us if now_us is not None else 0, dtype=pl.Int64) - last_us).cast(pl.Float64) / _US_PER_DAY
    return sums.select(
        pl.col("user_id").cast(pl.Int32),
        n.cast(pl.Float64).log1p().alias("log_count"),
        mean.alias("mean_rating"),
        std_from_sums(n, pl.col("s2"), pl.col("ss2")).alias("std_rating"),
        since.clip(lower_bound=0.0).alias("days_since_last"),
        *genre_means,
        *shares,
        (pl.col("year2") / n / 2.0).alias("mean_year"),
    ).sort("user_id")


def compute_user_features(
    ratings: pl.LazyFrame, movies: pl.LazyFrame, as_of: datetime | None = None
) -> pl.DataFrame:
    """One row per user with a rating at or before `as_of`; columns: user_id + user_feature_columns()."""
    acc = accumulate(ratings, movie_attributes(movies).collect(), as_of)
    return user_features_from_sums(acc.user_sums(), reference_us(acc, as_of))


# -- movies ---------------------------------------------------------------------------------------
def tag_counts(tags: pl.LazyFrame | None, as_of: datetime | None) -> pl.DataFrame:
    """movie_id -> number of tags at or before `as_of` (an empty frame when there are no tags)."""
    if tags is None:
        return pl.DataFrame(schema={"movie_id": pl.Int32, "n_tags": pl.Int64})
    known = tags if as_of is None else tags.filter(pl.col("tagged_at") <= as_utc(as_of))
    return known.group_by("movie_id").agg(pl.len().cast(pl.Int64).alias("n_tags")).collect()


def global_mean(movie_sums: pl.DataFrame) -> float:
    """Mean rating over every rating; the scale's midpoint (2.75) when there is none."""
    n = int(movie_sums["n"].sum())
    return float(movie_sums["s2"].sum()) / n / 2.0 if n else 2.75


def movie_features_from_sums(
    attributes: pl.DataFrame, sums: pl.DataFrame, tags: pl.DataFrame
) -> pl.DataFrame:
    """Every movie of the catalogue, rated or not (cold start): zero counts and the prior mean."""
    prior = MOVIE_PRIOR * global_mean(sums)
    joined = (
        attributes.join(sums.with_columns(pl.col("movie_id").cast(pl.Int32)), on="movie_id", how="left")
        .join(tags.with_columns(pl.col("movie_id").cast(pl.Int32)), on="movie_id", how="left")
        .with_columns(pl.col("n", "s2", "ss2", "n_recent", "n_tags").fill_null(0))
    )
    n = pl.col("n")
    return joined.select(
        "movie_id",
        "year",
        "year_missing",
        *(pl.col(f"g_{s}").cast(pl.Float64).alias(f"genre_{s}") for s in GENRE_SLUGS),
        n.cast(pl.Float64).log1p().alias("log_count"),
        ((pl.col("s2") / 2.0 + prior) / (n + MOVIE_PRIOR)).alias("shrunk_mean"),
        std_from_sums(n, pl.col("s2"), pl.col("ss2")).alias("std_rating"),
        pl.col("n_recent").cast(pl.Float64).log1p().alias("log_count_90d"),
        pl.col("n_tags").cast(pl.Float64).log1p().alias("log_tag_count"),
    ).sort("movie_id")


def compute_movie_features(
    ratings: pl.LazyFrame,
    movies: pl.LazyFrame,
    tags: pl.LazyFrame | None,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per movie of `movies`; columns: movie_id + movie_feature_columns()."""
    attributes = movie_attributes(movies).collect()
    acc = accumulate(ratings, attributes, as_of)
    sums = acc.movie_sums(reference_us(acc, as_of))
    return movie_features_from_sums(attributes, sums, tag_counts(tags, as_of))
