"""Helpers shared by the daily-partition tests: a tiny day range, its asset, rows and movies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from movierec_assets.db.connect import connect
from movierec_assets.ingest.daily_asset import build_daily_partitioned_ratings
from movierec_assets.partitions import DayRange, daily_partitions_for
from movierec_assets.resources.database import PostgresResource

# Days long before MovieLens (1995 on) or the synthetic data, so no other test meets these rows.
TINY = DayRange(date(1991, 1, 1), date(1991, 3, 31), "tiny-test")
TINY_MOVIES = [990001, 990002, 990003]
HEADER = "userId,movieId,rating,timestamp\n"


def tiny_asset(days: DayRange = TINY) -> dg.AssetsDefinition:
    return build_daily_partitioned_ratings(daily_partitions_for(days), days)


def ts(day: date, seconds: int = 3600) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + seconds


def day_lines(day: date, n: int, user0: int = 1) -> list[str]:
    """n valid rating lines on `day` (distinct users, movies cycling through TINY_MOVIES)."""
    return [f"{user0 + i},{TINY_MOVIES[i % 3]},{(i % 10 + 1) / 2},{ts(day, i % 86000)}" for i in range(n)]


def write_day(landing: Path, day: date, lines: Iterable[str], header: str = HEADER) -> Path:
    path = landing / f"{day.isoformat()}.csv"
    path.write_text(header + "".join(line + "\n" for line in lines))
    return path


def ensure_tiny_movies(url: str) -> None:
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO movielens.movies (movie_id, title, year, genres) "
            "SELECT m, 'Test movie ' || m, 1991, '{}' FROM unnest(%s::int[]) AS m ON CONFLICT DO NOTHING",
            (TINY_MOVIES,),
        )


def clear_days(url: str, days: DayRange = TINY) -> None:
    with connect(url) as conn:
        for table in ("ratings", "rejected_ratings"):
            conn.execute(
                f"DELETE FROM movielens.{table} WHERE partition_day BETWEEN %s AND %s",  # noqa: S608 - fixed names
                (days.first, days.last),
            )


def day_counts(url: str, days: Sequence[date]) -> dict[date, int]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT partition_day, count(*) FROM movielens.ratings WHERE partition_day = ANY(%s) GROUP BY 1",
            (list(days),),
        ).fetchall()
    return {d: n for d, n in rows}


def rejects(url: str, day: date) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        return conn.execute(
            "SELECT line_number, reason, source_file FROM movielens.rejected_ratings WHERE partition_day = %s "
            "ORDER BY line_number",
            (day,),
        ).fetchall()


def materialize_days(asset: dg.AssetsDefinition, first: date, last: date | None = None,
                     instance: dg.DagsterInstance | None = None, raise_on_error: bool = True) -> dg.ExecuteInJobResult:
    """One run for one day (partition_key) or a range (the single-run backfill tags)."""
    resources = {"postgres": PostgresResource()}
    if last is None or last == first:
        return dg.materialize([asset], partition_key=first.isoformat(), resources=resources, instance=instance,
                              raise_on_error=raise_on_error)
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat()}
    return dg.materialize([asset], tags=tags, resources=resources, instance=instance, raise_on_error=raise_on_error)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
