"""Loading MovieLens data into PostgreSQL: whole-content replaces in one transaction each.

`replace_history` swaps the history rows (partition_day IS NULL) of `movielens.ratings` while
keeping the rows daily partitions added. In one transaction it locks the table (concurrent
partition loads wait instead of being lost), sets the partition rows aside, drops the keys and
indexes, truncates, COPYs the history in (ADBC, COPY BINARY), puts the partition rows back and
rebuilds the keys and indexes in bulk, then `movielens.user_rated` (rated.py). Under
`wal_level=minimal` a COPY into a table truncated in the same transaction writes no WAL. A crash at any point rolls everything back: the previous
content stays as it was. Truncating (rather than building a second table and renaming it) keeps
the table's identity, so views, grants and indexes other migrations add survive a reload.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from movierec_assets.db import bulk
from movierec_assets.ingest import rated
from movierec_assets.ingest.quarantine import clear_rejects, write_rejects
from movierec_assets.ingest.validate import IngestError

RATINGS = ("movielens", "ratings")
RATING_COLUMNS = ["user_id", "movie_id", "rating", "rated_at"]
# A history file fails (loading nothing) when more than this share of its rows is bad: the one
# default, used by `raw_ratings`' run config and `load_history`.
MAX_REJECT_SHARE = 0.01
_MEMORY = re.compile(r"^\d+(kB|MB|GB)$")


class TooManyRejects(IngestError):
    """More than the allowed share of a file's rows is bad; nothing was written."""


@dataclass(frozen=True)
class LoadStats:
    rows: int  # history rows loaded
    rejected: int  # rows written to the quarantine
    partition_rows_kept: int
    copy_seconds: float  # the COPY of the history rows alone
    index_seconds: float  # primary key and index builds
    seconds: float  # the whole transaction, connect to commit

    @property
    def copy_rows_per_s(self) -> float:
        return self.rows / self.copy_seconds if self.copy_seconds > 0 else float("nan")

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class MoviesStats:
    movies: int
    tags: int
    links: int
    seconds: float


def check_reject_share(
    n_good: int,
    n_rejected: int,
    max_share: float = MAX_REJECT_SHARE,
    *,
    source_file: str = "input",
    rejected: pl.DataFrame | None = None,
) -> None:
    """Raise `TooManyRejects` when more than `max_share` of all rows were rejected.

    The message names the file, the counts and a few sample reasons with their line numbers.
    """
    total = n_good + n_rejected
    if total == 0 or n_rejected <= max_share * total:
        return
    samples = ""
    if rejected is not None and rejected.height:
        shown = rejected.head(3).select(pl.format("line {}: {}", "line_number", "reason")).to_series()
        samples = "; e.g. " + "; ".join(shown.to_list())
    raise TooManyRejects(
        f"{source_file}: {n_rejected:,} of {total:,} rows rejected ({n_rejected / total:.2%}), "
        f"more than the allowed {max_share:.2%}; nothing was loaded{samples}"
    )


# -- keys and indexes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TableDdl:
    constraints: list[tuple[str, str]]  # (name, definition) of primary/unique/exclusion keys
    indexes: list[tuple[str, str]]  # (name, CREATE INDEX statement) of the other indexes


def _table_ddl(conn: Any, schema: str, table: str) -> _TableDdl:
    """The table's keys and indexes as the catalog defines them (recreated after the bulk load)."""
    rel = bulk.qualified(schema, table)
    cons = bulk.fetch_arrow(
        conn,
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname",
        (rel,),
    ).to_pylist()
    idx = bulk.fetch_arrow(
        conn,
        "SELECT c.relname, pg_get_indexdef(c.oid) AS def FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = $1::regclass AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY c.relname",
        (rel,),
    ).to_pylist()
    return _TableDdl([(r["conname"], r["def"]) for r in cons], [(r["relname"], r["def"]) for r in idx])


def _drop_ddl(conn: Any, schema: str, table: str, ddl: _TableDdl) -> None:
    rel = bulk.qualified(schema, table)
    for name, _ in ddl.constraints:
        bulk.execute(conn, f"ALTER TABLE {rel} DROP CONSTRAINT {bulk.quote_ident(name)}")
    for name, _ in ddl.indexes:
        bulk.execute(conn, f"DROP INDEX {bulk.qualified(schema, name)}")


def _create_ddl(conn: Any, schema: str, table: str, ddl: _TableDdl) -> None:
    rel = bulk.qualified(schema, table)
    for name, definition in ddl.constraints:
        bulk.execute(conn, f"ALTER TABLE {rel} ADD CONSTRAINT {bulk.quote_ident(name)} {definition}")
    for _, statement in ddl.indexes:
        bulk.execute(conn, statement)


# -- history ---------------------------------------------------------------------------------------
def _set_local(conn: Any, maintenance_work_mem: str, lock_timeout_s: int) -> None:
    if not _MEMORY.match(maintenance_work_mem):
        raise ValueError(f"maintenance_work_mem must look like '1GB', got {maintenance_work_mem!r}")
    bulk.execute(conn, f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
    bulk.execute(conn, f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'")


def _set_partitions_aside(conn: Any, keep_after: date | None) -> pl.DataFrame:
    """Copy the partition rows to keep into a temp table; return them (for movielens.user_rated)."""
    where = "partition_day IS NOT NULL" + (" AND partition_day > $1" if keep_after else "")
    params = (keep_after,) if keep_after else None
    bulk.execute(
        conn,
        f"CREATE TEMP TABLE _keep_partitions ON COMMIT DROP AS SELECT * FROM movielens.ratings WHERE {where}",  # noqa: S608
        params,
    )
    return pl.from_arrow(bulk.fetch_arrow(conn, f"SELECT {', '.join(RATING_COLUMNS)} FROM _keep_partitions"))  # type: ignore[return-value]  # noqa: S608 - fixed names


def replace_history(
    url: str,
    good: pl.DataFrame,
    rejected: pl.DataFrame,
    source_file: str,
    *,
    keep_partitions_after: date | None = None,
    maintenance_work_mem: str = "2GB",
    lock_timeout_s: int = 300,
) -> LoadStats:
    """Replace the history rows of movielens.ratings (and their quarantine rows) atomically.

    `good` holds the ratings contract columns (extra columns are ignored); sorted by
    (user_id, movie_id, rated_at) the primary key builds fastest. Partition rows are kept
    (only those after `keep_partitions_after` when given, e.g. the new cutoff day).
    """
    started = time.perf_counter()
    history = good.select(RATING_COLUMNS)
    with bulk.transaction(url) as conn:
        _set_local(conn, maintenance_work_mem, lock_timeout_s)
        bulk.execute(conn, "LOCK TABLE movielens.ratings IN ACCESS EXCLUSIVE MODE")
        kept = _set_partitions_aside(conn, keep_partitions_after)
        ddl = _table_ddl(conn, *RATINGS)
        _drop_ddl(conn, *RATINGS, ddl)
        bulk.execute(conn, "TRUNCATE movielens.ratings")
        t_copy = time.perf_counter()
        bulk.ingest(conn, *RATINGS, history)
        copy_seconds = time.perf_counter() - t_copy
        bulk.execute(conn, "INSERT INTO movielens.ratings SELECT * FROM _keep_partitions")
        t_index = time.perf_counter()
        _create_ddl(conn, *RATINGS, ddl)
        index_seconds = time.perf_counter() - t_index
        # movielens.user_rated from the new content (history + kept days), in the same transaction
        rated.replace_all(conn, pl.concat([history, kept.cast(history.schema)]))
        clear_rejects(conn, None)
        n_rejected = write_rejects(conn, rejected, source_file, None)
    return LoadStats(
        rows=history.height,
        rejected=n_rejected,
        partition_rows_kept=kept.height,
        copy_seconds=copy_seconds,
        index_seconds=index_seconds,
        seconds=time.perf_counter() - started,
    )


# -- movies, tags, links ---------------------------------------------------------------------------
def load_movies(
    url: str, movies: pl.DataFrame, tags: pl.DataFrame | None, links: pl.DataFrame | None
) -> MoviesStats:
    """Replace movielens.movies, .tags and .links in one transaction (absent files empty a table)."""
    started = time.perf_counter()
    frames = {"movies": movies, "tags": tags, "links": links}
    with bulk.transaction(url) as conn:
        bulk.execute(conn, "SET LOCAL lock_timeout = '300s'")
        bulk.execute(conn, "TRUNCATE movielens.movies, movielens.tags, movielens.links")
        counts = {
            name: bulk.ingest(conn, "movielens", name, frame) if frame is not None and frame.height else 0
            for name, frame in frames.items()
        }
    return MoviesStats(counts["movies"], counts["tags"], counts["links"], time.perf_counter() - started)
