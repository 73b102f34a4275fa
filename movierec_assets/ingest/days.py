"""The day loader: landing files -> `movielens.ratings` rows with `partition_day` set.

Every file is read and validated first (as in raw ingestion, plus: a row dated outside its file's
day is rejected), so an unreadable file fails the run before the database is touched. Then ONE
transaction replaces the days: lock them, delete their rows and quarantine rows, COPY the new rows
in, write the rejects, and recompute the touched users' rows of `movielens.user_rated` (rated.py).
Re-running a day replaces it; a range of days is one delete and one COPY.

Concurrency: each run takes transaction-scoped advisory locks, in one global order (months, then
days): a shared lock on each month it touches plus an exclusive lock per day, or an exclusive lock
on a month it covers completely (so a 2,915-day backfill holds ~100 locks, not 2,915). The same day
loaded twice at once serialises; different days never wait for each other. Deadlocks and
serialization failures are retried.
"""

from __future__ import annotations

import calendar
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import adbc_driver_manager
import polars as pl

from movierec_assets.db import bulk
from movierec_assets.db.connect import DatabaseUnavailable, adbc_connect, one_line
from movierec_assets.ingest import rated
from movierec_assets.ingest.landing import DayFile, LandingError, day_file
from movierec_assets.ingest.quarantine import write_rejects
from movierec_assets.ingest.validate import IngestError, ParsedRatings, parse_ratings_file, validate_ratings

log = logging.getLogger(__name__)

RATING_COLUMNS = ["user_id", "movie_id", "rating", "rated_at", "partition_day"]
_PK = ["user_id", "movie_id", "rated_at"]
_EMPTY_GOOD = pl.DataFrame(schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32,
                                   "rated_at": pl.Datetime("us", "UTC"), "partition_day": pl.Date})
RETRY_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure", "55P03": "lock timeout"}
# Advisory lock namespaces (the two-int4 key space, separate from the migration lock's int8 key).
_NS_MONTH = 1297219585
_NS_DAY = 1297219586
_LOCK_SQL = (
    "SELECT count(CASE WHEN x THEN pg_advisory_xact_lock($3::int, k) "
    "ELSE pg_advisory_xact_lock_shared($3::int, k) END) FROM unnest($1::int[], $2::bool[]) AS t(k, x)"
)
_DELETE_SQL = {
    "ratings": "DELETE FROM movielens.ratings AS r USING unnest($1::date[]) AS d(day) WHERE r.partition_day = d.day",
    "rejected_ratings": "DELETE FROM movielens.rejected_ratings AS r USING unnest($1::date[]) AS d(day) "
    "WHERE r.partition_day = d.day",
}
_DAY_LOCK_SQL = "SELECT count(pg_advisory_xact_lock($2::int, k)) FROM unnest($1::int[]) AS t(k)"


class DayLoadError(RuntimeError):
    """A day cannot be loaded (no file, unreadable file, no movies yet); nothing was written."""


@dataclass(frozen=True)
class DayStats:
    day: date
    source_file: str
    rows_loaded: int
    rows_rejected: int


@dataclass
class LoadReport:
    days: list[DayStats]
    seconds: float = 0.0
    attempts: int = 1
    read_seconds: float = 0.0
    write_seconds: float = 0.0
    rejected_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows_loaded(self) -> int:
        return sum(d.rows_loaded for d in self.days)

    @property
    def rows_rejected(self) -> int:
        return sum(d.rows_rejected for d in self.days)


@dataclass
class _DayBatch:
    """Validated rows of the days of one run, ready to write."""

    days: list[date]
    good: pl.DataFrame  # RATING_COLUMNS
    rejects: list[tuple[DayFile, pl.DataFrame]]
    stats: list[DayStats]


# -- reading ---------------------------------------------------------------------------------------
def _parse_file(f: DayFile) -> ParsedRatings:
    if f.path.suffix == ".parquet":
        return _parse_parquet(f)
    return parse_ratings_file(f.path, source_name=f.path.name)


def _parse_parquet(f: DayFile) -> ParsedRatings:
    """A Parquet day file goes through the very same line parser, as its CSV rendering."""
    try:
        frame = pl.read_parquet(f.path)
    except Exception as exc:  # polars/arrow raise many types for a bad file
        raise IngestError(f"{f.path.name}: not a readable Parquet file ({type(exc).__name__})") from None
    with tempfile.NamedTemporaryFile("wb", suffix=".csv") as tmp:
        frame.write_csv(tmp.name, line_terminator="\n")
        return parse_ratings_file(Path(tmp.name), source_name=f.path.name)


def validate_day(f: DayFile, parsed: ParsedRatings, known_movie_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(good rows with partition_day, rejected rows) of one parsed day file."""
    if parsed.good.height == 0:  # header-only days are common; skip the per-call overheads
        return _EMPTY_GOOD, parsed.rejected
    kept, invalid = validate_ratings(parsed.good, known_movie_ids, expected_day=f.day)
    good = kept.select(pl.col(RATING_COLUMNS[:4]), pl.lit(f.day).alias("partition_day"))
    if invalid.height == 0:
        return good, parsed.rejected
    return good, pl.concat([parsed.rejected, invalid]).sort("line_number", nulls_last=True)


def day_files(landing_dir: Path, days: Sequence[date]) -> list[DayFile]:
    """Every day's file, or one error naming the missing/unacceptable ones (first three)."""
    files: list[DayFile] = []
    problems: list[str] = []
    for day in days:
        try:
            files.append(day_file(landing_dir, day))
        except LandingError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 3} more days)" if len(problems) > 3 else ""
        raise DayLoadError("; ".join(problems[:3]) + more)
    return files


def parse_days(files: Sequence[DayFile]) -> list[ParsedRatings]:
    """Parse every file; the first unreadable one fails the load (before anything is written)."""
    parsed = []
    for f in files:
        try:
            parsed.append(_parse_file(f))
        except IngestError as exc:
            raise DayLoadError(f"day {f.day}: cannot load {f.path}: {exc}") from None
        if not f.unchanged():  # replaced while being read (a new delivery, or a swapped-in symlink)
            raise DayLoadError(f"day {f.day}: {f.path} changed while it was being read; run the day again")
    return parsed


def read_days(conn: Any, landing_dir: Path, days: Sequence[date]) -> _DayBatch:
    """Read, parse and validate every day's file (movie ids checked against the database)."""
    files = day_files(landing_dir, days)
    parsed = parse_days(files)
    known = known_movie_ids(conn, pl.concat([p.good["movie_id"] for p in parsed]))
    goods: list[pl.DataFrame] = []
    rejects: list[tuple[DayFile, pl.DataFrame]] = []
    stats: list[DayStats] = []
    for f, p in zip(files, parsed, strict=True):
        good, rejected = validate_day(f, p, known)
        goods.append(good)
        if rejected.height:
            rejects.append((f, rejected))
        stats.append(DayStats(f.day, str(f.path), good.height, rejected.height))
    return _DayBatch(list(days), pl.concat(goods, rechunk=True), rejects, stats)


# -- locking ---------------------------------------------------------------------------------------
def _month_key(day: date) -> int:
    return day.year * 12 + day.month - 1


def lock_plan(days: Sequence[date]) -> tuple[list[tuple[int, bool]], list[int]]:
    """(month locks as (key, exclusive) in key order, day locks in key order) for a set of days."""
    by_month: dict[int, set[date]] = {}
    for d in days:
        by_month.setdefault(_month_key(d), set()).add(d)
    months: list[tuple[int, bool]] = []
    day_keys: list[int] = []
    for key in sorted(by_month):
        members = by_month[key]
        any_day = next(iter(members))
        full = len(members) == calendar.monthrange(any_day.year, any_day.month)[1]
        months.append((key, full))
        if not full:
            day_keys.extend(d.toordinal() for d in members)
    return months, sorted(day_keys)


def _pg_array(values: Sequence[object]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"


def _lock(conn: object, days: Sequence[date]) -> None:
    months, day_keys = lock_plan(days)
    keys = _pg_array([k for k, _ in months])
    excl = _pg_array(["t" if x else "f" for _, x in months])
    bulk.execute(conn, _LOCK_SQL, [keys, excl, _NS_MONTH])
    if day_keys:
        bulk.execute(conn, _DAY_LOCK_SQL, [_pg_array(day_keys), _NS_DAY])


# -- writing ---------------------------------------------------------------------------------------
def _write(conn: object, batch: _DayBatch) -> None:
    """Replace the batch's days inside the caller's transaction."""
    day_list = _pg_array([d.isoformat() for d in batch.days])
    bulk.execute(conn, "SET LOCAL lock_timeout = '120s'")
    _lock(conn, batch.days)
    rated.note_users_of_days(conn, day_list)  # the users whose old rows of these days go
    # A join against the day list (hash join for a long list), not `= ANY(array)` per row.
    for table in ("ratings", "rejected_ratings"):
        bulk.execute(conn, _DELETE_SQL[table], [day_list])
    if batch.good.height:
        # in primary-key order, the index inserts touch neighbouring pages
        bulk.ingest(conn, "movielens", "ratings", batch.good.select(RATING_COLUMNS).sort(_PK))
    if batch.rejects:
        for f, rejected in batch.rejects:
            write_rejects(conn, rejected, f.path.name, f.day)
    rated.note_users_of_days(conn, day_list)  # and those of the new rows
    rated.refresh_noted_users(conn)  # last: it serialises concurrent loads until they commit


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def _write_with_retry(conn: Any, batch: _DayBatch, max_attempts: int) -> int:
    """Run the write transaction, retrying deadlocks/serialization failures; returns attempts used."""
    for attempt in range(1, max_attempts + 1):
        try:
            _write(conn, batch)
            conn.commit()
            return attempt
        except adbc_driver_manager.Error as exc:
            state = _sqlstate(exc)
            _rollback_quietly(conn)
            if state in RETRY_SQLSTATES and attempt < max_attempts:
                log.warning("day load: %s (attempt %d), retrying", RETRY_SQLSTATES[state], attempt)
                time.sleep(0.1 * 2**attempt)
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _database_error(exc: Exception, days: Sequence[date]) -> Exception:
    """A driver error as a clear one: lost connection -> DatabaseUnavailable (retried), else DayLoadError."""
    state = _sqlstate(exc)
    if state is None or state.startswith("08") or state.startswith("57P"):
        return DatabaseUnavailable(f"lost the database while loading days {days[0]}..{days[-1]}: {one_line(exc)}")
    return DayLoadError(f"loading days {days[0]}..{days[-1]} failed (SQLSTATE {state}): {one_line(exc)}")


def _rollback_quietly(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection may be gone; closing it discards the transaction anyway
        log.debug("rollback failed", exc_info=True)


def known_movie_ids(conn: Any, wanted: pl.Series) -> pl.Series:
    """Which of the `wanted` movie ids movielens.movies holds (only those, not the whole table)."""
    empty = not bulk.fetch_arrow(conn, "SELECT EXISTS (SELECT 1 FROM movielens.movies) AS x")["x"][0].as_py()
    if empty:
        conn.rollback()
        raise DayLoadError("movielens.movies is empty: materialize raw_movies before loading day partitions")
    ids = _pg_array(wanted.unique().sort().to_list())
    found = bulk.fetch_arrow(conn, "SELECT movie_id FROM movielens.movies WHERE movie_id = ANY($1::int[])", [ids])
    conn.rollback()  # end the read-only transaction; the write opens its own
    return pl.from_arrow(found)["movie_id"]  # type: ignore[index]


def load_days(url: str, days: Sequence[date], landing_dir: Path, *, max_attempts: int = 5) -> LoadReport:
    """Load (or reload) `days` from `landing_dir` into movielens.ratings in one transaction.

    One connection for the whole load (connecting costs more than a day's COPY).
    """
    if not days:
        raise DayLoadError("no days to load")
    days = sorted(set(days))
    started = time.perf_counter()
    try:
        with adbc_connect(url, autocommit=False) as conn:
            batch = read_days(conn, Path(landing_dir), days)
            read_done = time.perf_counter()
            attempts = _write_with_retry(conn, batch, max_attempts)
    except adbc_driver_manager.Error as exc:
        raise _database_error(exc, days) from None
    done = time.perf_counter()
    return LoadReport(batch.stats, done - started, attempts, read_done - started, done - read_done,
                      _reason_counts(batch))


def _reason_counts(batch: _DayBatch) -> dict[str, int]:
    """Rejected rows per kind of reason (numbers blanked out), for the run's metadata."""
    if not batch.rejects:
        return {}
    kinds = pl.concat([r.select("reason") for _, r in batch.rejects]).select(
        pl.col("reason").str.replace_all(r"[0-9][0-9:TZ.\-]*", "N")
    )
    counts = kinds.group_by("reason").len().sort("len", descending=True)
    return dict(zip(counts["reason"].to_list(), counts["len"].to_list(), strict=True))
