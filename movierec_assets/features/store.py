"""PostgreSQL in and out for the features: Arrow reads (ADBC, COPY BINARY), atomic table swaps.

Ratings are never materialised whole: two connections each stream half of the table's pages
(TID range scans) into their own accumulator of exact sums, which are merged at the end.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import pyarrow as pa

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect
from movierec_assets.features.aggregates import CHUNK_ROWS, Accumulator
from movierec_assets.features.compute import (
    FEATURE_SET_VERSION,
    movie_attributes,
    movie_features_from_sums,
    new_accumulator,
    reference_us,
    user_features_from_sums,
)
from movierec_assets.features.scaling import MOVIE_TABLE, USER_TABLE

SCHEMA = "features"
STATS_TABLE = "scaling_stats"
RATING_COLUMNS = "user_id, movie_id, rating, rated_at"
READ_STREAMS = 2  # one per core: the server encodes COPY while we aggregate the other stream


@dataclass
class Timings:
    """Wall seconds per phase, for asset metadata and the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, started: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


# -- reading --------------------------------------------------------------------------------------
def read_movies(url: str) -> pl.DataFrame:
    """movielens.movies as the movies contract minus the title (not a feature)."""
    frame = bulk.read_polars(url, "SELECT movie_id, year, genres FROM movielens.movies")
    return frame.with_columns(pl.col("genres").cast(pl.List(pl.String)))


def read_tag_counts(url: str, as_of: datetime | None) -> pl.DataFrame:
    """movie_id -> tags at or before `as_of`, counted by the server (only the counts travel)."""
    sql = "SELECT movie_id, count(*)::bigint AS n_tags FROM movielens.tags"
    if as_of is None:
        return bulk.read_polars(url, sql + " GROUP BY movie_id")
    return bulk.read_polars(url, sql + " WHERE tagged_at <= $1 GROUP BY movie_id", [as_of])


def _page_count(url: str) -> int:
    sql = "SELECT (pg_relation_size('movielens.ratings') / current_setting('block_size')::int)::bigint AS pages"
    return int(bulk.read_polars(url, sql)["pages"][0])


def _stream_pages(url: str, first: int, last: int | None, acc: Accumulator) -> int:
    """Fold the ratings stored in heap pages [first, last) into `acc`; return rows read."""
    where = f"ctid >= '({int(first)},0)'::tid"
    if last is not None:
        where += f" AND ctid < '({int(last)},0)'::tid"
    sql = f"SELECT {RATING_COLUMNS} FROM movielens.ratings WHERE {where}"  # noqa: S608 -- ints only
    rows, pending, pending_rows = 0, [], 0
    with adbc_connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
        for batch in cur.fetch_record_batch():
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= CHUNK_ROWS // 2:
                acc.add(pa.Table.from_batches(pending))
                rows, pending, pending_rows = rows + pending_rows, [], 0
    if pending:
        acc.add(pa.Table.from_batches(pending))
    return rows + pending_rows


def accumulate_ratings(url: str, attributes: pl.DataFrame, as_of: datetime | None) -> Accumulator:
    """Exact per-user/per-movie sums over movielens.ratings, read over READ_STREAMS connections."""
    pages = _page_count(url)
    bounds = [pages * i // READ_STREAMS for i in range(READ_STREAMS)] + [None]
    bounds[0] = 0
    accs = [new_accumulator(attributes, as_of) for _ in range(READ_STREAMS)]
    with ThreadPoolExecutor(READ_STREAMS) as pool:
        futures = [pool.submit(_stream_pages, url, bounds[i], bounds[i + 1], accs[i]) for i in range(READ_STREAMS)]
        for f in futures:
            f.result()
    merged = accs[0]
    for other in accs[1:]:
        merged.merge(other)
    return merged


@dataclass
class FeatureFrames:
    users: pl.DataFrame
    movies: pl.DataFrame
    timings: Timings


def compute_from_database(url: str, as_of: datetime | None = None) -> FeatureFrames:
    """Both feature frames from what is in PostgreSQL now (or as known at `as_of`)."""
    timings = Timings()
    started = time.perf_counter()
    attributes = movie_attributes(read_movies(url).lazy()).collect()
    tags = read_tag_counts(url, as_of)
    acc = accumulate_ratings(url, attributes, as_of)
    timings.add("read_aggregate", started)  # the read and the sums overlap, stream by stream
    started = time.perf_counter()
    now_us = reference_us(acc, as_of)
    users = user_features_from_sums(acc.user_sums(), now_us)
    movies = movie_features_from_sums(attributes, acc.movie_sums(now_us), tags)
    timings.add("finalize", started)
    return FeatureFrames(users=users, movies=movies, timings=timings)


# -- writing --------------------------------------------------------------------------------------
def swap_table(url: str, table: str, frame: pl.DataFrame, key: str) -> int:
    """Replace features.<table> with `frame` atomically: build a new table, then swap it in.

    One transaction: COPY into a table created in it (no WAL under wal_level=minimal), drop the
    old table, add the primary key, rename. Readers see the old table or the new one, never a mix;
    a failure anywhere leaves the old table untouched.
    """
    build = f"{table}__build_{secrets.token_hex(4)}"
    target, staged = bulk.qualified(SCHEMA, table), bulk.qualified(SCHEMA, build)
    with adbc_connect(url, autocommit=False) as conn:
        try:
            rows = bulk.ingest(conn, SCHEMA, build, frame, mode="create")
            bulk.execute(conn, f"DROP TABLE IF EXISTS {target}")
            bulk.execute(
                conn,
                f"ALTER TABLE {staged} ADD CONSTRAINT {bulk.quote_ident(table + '_pkey')} "
                f"PRIMARY KEY ({bulk.quote_ident(key)})",
            )
            bulk.execute(conn, f"ALTER TABLE {staged} RENAME TO {bulk.quote_ident(table)}")
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return rows


def write_user_features(url: str, users: pl.DataFrame) -> int:
    return swap_table(url, USER_TABLE, users, "user_id")


def write_movie_features(url: str, movies: pl.DataFrame) -> int:
    return swap_table(url, MOVIE_TABLE, movies, "movie_id")


def read_feature_tables(url: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(user_features, movie_features) as stored, ordered by id."""
    users = bulk.read_polars(url, f"SELECT * FROM {bulk.qualified(SCHEMA, USER_TABLE)} ORDER BY user_id")  # noqa: S608
    movies = bulk.read_polars(url, f"SELECT * FROM {bulk.qualified(SCHEMA, MOVIE_TABLE)} ORDER BY movie_id")  # noqa: S608
    return users, movies


def write_scaling_stats(url: str, stats: pl.DataFrame) -> int:
    """Replace this feature-set version's rows of features.scaling_stats in one transaction."""
    versions = stats["feature_set_version"].unique().to_list()
    with adbc_connect(url, autocommit=False) as conn:
        try:
            bulk.execute(conn, "DELETE FROM features.scaling_stats WHERE feature_set_version = ANY($1)", [versions])
            rows = bulk.ingest(conn, SCHEMA, STATS_TABLE, stats, mode="append")
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return rows


def load_scaling_stats(url: str, version: str = FEATURE_SET_VERSION) -> pl.DataFrame:
    """The stored scaling stats of one feature-set version (empty if never computed)."""
    return bulk.read_polars(
        url,
        "SELECT feature_set_version, table_name, column_name, mean, std, computed_at "
        "FROM features.scaling_stats WHERE feature_set_version = $1 ORDER BY table_name, column_name",
        [version],
    )
