"""PostgreSQL in and out for the features: Arrow reads (ADBC, COPY BINARY), atomic table swaps.

Ratings are never materialised whole: two connections each stream half of the table's pages
(TID range scans) into their own accumulator of exact sums, which are merged at the end.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
MOVIES_SQL = "SELECT movie_id, year, genres FROM movielens.movies"
TAGS_SQL = "SELECT movie_id, count(*)::bigint AS n_tags FROM movielens.tags"
PAGES_SQL = "SELECT (pg_relation_size('movielens.ratings') / current_setting('block_size')::int)::bigint AS pages"


def _movies_frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.col("genres").cast(pl.List(pl.String)))


def read_movies(url: str) -> pl.DataFrame:
    """movielens.movies as the movies contract minus the title (not a feature)."""
    with adbc_connect(url, autocommit=True) as conn:
        return _movies_frame(bulk.fetch_arrow(conn, MOVIES_SQL))


def _tag_counts(conn: Any, as_of: datetime | None) -> pl.DataFrame:
    """movie_id -> tags at or before `as_of`, counted by the server (only the counts travel)."""
    if as_of is None:
        table = bulk.fetch_arrow(conn, TAGS_SQL + " GROUP BY movie_id")
    else:
        table = bulk.fetch_arrow(conn, TAGS_SQL + " WHERE tagged_at <= $1 GROUP BY movie_id", [as_of])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def read_tag_counts(url: str, as_of: datetime | None) -> pl.DataFrame:
    with adbc_connect(url, autocommit=True) as conn:
        return _tag_counts(conn, as_of)


def _stream_pages(conn: Any, first: int, last: int | None, acc: Accumulator) -> int:
    """Fold the ratings stored in heap pages [first, last) into `acc`; return rows read."""
    where = f"ctid >= '({int(first)},0)'::tid"
    if last is not None:
        where += f" AND ctid < '({int(last)},0)'::tid"
    sql = f"SELECT {RATING_COLUMNS} FROM movielens.ratings WHERE {where}"  # noqa: S608 -- ints only
    rows, pending, pending_rows = 0, [], 0
    with conn.cursor() as cur:
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


_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def _open(url: str) -> tuple[Any, Any]:
    manager = adbc_connect(url, autocommit=False)
    return manager, manager.__enter__()


def _share_snapshot(first: Any, others: list[Any]) -> None:
    """Put every connection in one REPEATABLE READ snapshot (exported by `first`).

    Without it a day committed between the two streams' starts could be half counted.
    """
    bulk.execute(first, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    snapshot = str(pl.from_arrow(bulk.fetch_arrow(first, "SELECT pg_export_snapshot() AS s"))["s"][0])  # type: ignore[index]
    if not _SNAPSHOT_ID.match(snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    for conn in others:
        bulk.execute(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        bulk.execute(conn, f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # checked above: hex, dashes


def read_and_accumulate(url: str, as_of: datetime | None) -> tuple[pl.DataFrame, pl.DataFrame, Accumulator]:
    """(movie attributes, tag counts, exact rating sums), over READ_STREAMS connections.

    All reads share one snapshot. The second connection opens while the first starts; then each
    streams part of the ratings' heap pages (TID range scans) into its own accumulator.
    """
    with ExitStack() as stack, ThreadPoolExecutor(READ_STREAMS) as pool:
        others = [pool.submit(_open, url) for _ in range(READ_STREAMS - 1)]
        try:
            conn = stack.enter_context(adbc_connect(url, autocommit=False))
        finally:  # registered even if ours failed, so no connection outlives this block
            for future in others:
                stack.push(future.result()[0])
        conns = [conn, *(f.result()[1] for f in others)]
        _share_snapshot(conn, conns[1:])
        attributes = movie_attributes(_movies_frame(bulk.fetch_arrow(conn, MOVIES_SQL)).lazy()).collect()
        tags = _tag_counts(conn, as_of)
        pages = int(pl.from_arrow(bulk.fetch_arrow(conn, PAGES_SQL))["pages"][0])  # type: ignore[index]
        bounds: list[int | None] = [pages * i // READ_STREAMS for i in range(READ_STREAMS)] + [None]
        accs = [new_accumulator(attributes, as_of) for _ in range(READ_STREAMS)]
        futures = [
            pool.submit(_stream_pages, conns[i], bounds[i] or 0, bounds[i + 1], accs[i]) for i in range(READ_STREAMS)
        ]
        for f in futures:
            f.result()
        for c in conns:
            c.rollback()  # read only: nothing to keep
    merged = accs[0]
    for other in accs[1:]:
        merged.merge(other)
    return attributes, tags, merged


@dataclass
class FeatureFrames:
    users: pl.DataFrame
    movies: pl.DataFrame
    timings: Timings


def compute_from_database(url: str, as_of: datetime | None = None) -> FeatureFrames:
    """Both feature frames from what is in PostgreSQL now (or as known at `as_of`)."""
    timings = Timings()
    started = time.perf_counter()
    attributes, tags, acc = read_and_accumulate(url, as_of)
    timings.add("read_aggregate", started)  # the read and the sums overlap, stream by stream
    started = time.perf_counter()
    now_us = reference_us(acc, as_of)
    users = user_features_from_sums(acc.user_sums(), now_us)
    movies = movie_features_from_sums(attributes, acc.movie_sums(now_us), tags)
    timings.add("finalize", started)
    return FeatureFrames(users=users, movies=movies, timings=timings)


# -- writing --------------------------------------------------------------------------------------
def swap_tables(url: str, tables: list[tuple[str, pl.DataFrame, str]]) -> int:
    """Replace features.<table> for each (table, frame, key) atomically, all in one transaction.

    Each is `bulk.replace_table` (COPY into a new table, drop the old one, key, rename). Readers
    see the old tables or the new ones, never a mix; a failure anywhere leaves the old ones untouched.
    """
    with bulk.transaction(url) as conn:
        return sum(bulk.replace_table(conn, SCHEMA, table, frame, [key]) for table, frame, key in tables)


def swap_table(url: str, table: str, frame: pl.DataFrame, key: str) -> int:
    return swap_tables(url, [(table, frame, key)])


def write_feature_tables(url: str, users: pl.DataFrame, movies: pl.DataFrame) -> int:
    """Both feature tables, swapped in together."""
    return swap_tables(url, [(USER_TABLE, users, "user_id"), (MOVIE_TABLE, movies, "movie_id")])


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
