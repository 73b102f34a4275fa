"""Benchmark: daily partition loads (issue 3).

Run: `python -m benchmarks.bench_partitions [--history 3000000] [--days 20] [--per-day 10000]`.

1. One day at ml-32m volume (~10k ratings) into a movielens.ratings that already holds a few
   million history rows (PK + partition index in place): the asset's compute (`load_days`: read,
   validate, lock, delete, COPY, commit), median over `--days` days, and the same day through a
   whole `dg.materialize` run (Dagster overhead included).
2. A backfill of every future day of ml-latest-small (2,915 days) in one run: `load_days` on all
   days, and the whole single-run Dagster materialization (which records one event per day).

Ceiling, measured in the same run on the same Arrow rows: a bare COPY (ADBC, COPY BINARY) into an
UNLOGGED table with no indexes. A fresh embedded server runs under a temp MOVIEREC_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.paths import ml_small

RESULTS = Path(__file__).resolve().parent / "results" / "partitions.json"
ML_SMALL = ml_small()  # $MOVIEREC_ML_SMALL, else ../shared/movielens/ml-latest-small
N_MOVIES = 87_000
HISTORY_END = datetime(2020, 1, 1, tzinfo=UTC)
FIRST_DAY = date(2021, 3, 1)


def _ratings(n: int, rng: np.random.Generator, t0: int, t1: int, user0: int = 1) -> pl.DataFrame:
    users = rng.integers(user0, user0 + 200_000, n, dtype=np.int32)
    movies = (rng.zipf(1.2, n) % N_MOVIES + 1).astype(np.int32)
    ts = rng.integers(t0, t1, n) * 1_000_000
    stars = np.clip(np.round(rng.normal(7.0, 2.0, n)), 1, 10).astype(np.float32) / 2
    frame = pl.DataFrame({"user_id": users, "movie_id": movies, "rating": stars,
                          "rated_at": pl.Series(ts).cast(pl.Datetime("us", "UTC"))})
    return frame.unique(["user_id", "movie_id", "rated_at"])


def _setup_synthetic(url: str, n_history: int, rng: np.random.Generator) -> None:
    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect

    ids = np.arange(1, N_MOVIES + 1, dtype=np.int32)
    movies = pl.DataFrame({"movie_id": ids, "title": [f"Movie {i}" for i in ids],
                           "year": pl.Series([None] * N_MOVIES, dtype=pl.Int32),
                           "genres": pl.Series([[]] * N_MOVIES, dtype=pl.List(pl.String))})
    t1 = int(HISTORY_END.timestamp())
    history = _ratings(n_history, rng, t1 - 20 * 365 * 86400, t1)
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.rejected_ratings, movielens.movies")
        bulk.ingest(conn, "movielens", "movies", movies)
        bulk.ingest(conn, "movielens", "ratings", history)
        conn.commit()
    with adbc_connect(url, autocommit=True) as conn:
        bulk.execute(conn, "VACUUM ANALYZE movielens.ratings")


def _write_days(landing: Path, days: list[date], per_day: int, rng: np.random.Generator) -> dict[date, pl.DataFrame]:
    from movierec_assets.ingest.replay import day_csv

    frames = {}
    for d in days:
        t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
        frame = _ratings(per_day, rng, t0, t0 + 86400)
        (landing / f"{d.isoformat()}.csv").write_bytes(day_csv(frame))
        frames[d] = frame.with_columns(partition_day=pl.lit(d))
    return frames


def _bare_copy(url: str, frame: pl.DataFrame) -> float:
    """The ceiling: COPY the same Arrow rows into a fresh UNLOGGED table without indexes."""
    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect

    with adbc_connect(url) as conn:
        bulk.execute(conn, "DROP TABLE IF EXISTS public.bench_ceiling")
        bulk.execute(conn, "CREATE UNLOGGED TABLE public.bench_ceiling (user_id int, movie_id int, rating real, "
                     "rated_at timestamptz, partition_day date)")
        conn.commit()
        started = time.perf_counter()
        bulk.ingest(conn, "public", "bench_ceiling", frame)
        conn.commit()
        return time.perf_counter() - started


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def bench_one_day(url: str, landing: Path, n_days: int, per_day: int, n_history: int) -> dict[str, Any]:
    import dagster as dg

    from movierec_assets.ingest.days import load_days
    from movierec_assets.partitions import DayRange, daily_partitions_for
    from movierec_assets.resources.database import PostgresResource

    rng = np.random.default_rng(7)
    _setup_synthetic(url, n_history, rng)
    days = [FIRST_DAY + timedelta(days=i) for i in range(2 * n_days)]
    frames = _write_days(landing, days, per_day, rng)
    compute, ceiling, rows, reads, writes = [], [], [], [], []
    for d in days[:n_days]:
        seconds, report = _timed(lambda d=d: load_days(url, [d], landing))
        compute.append(seconds)
        rows.append(report.rows_loaded)
        reads.append(report.read_seconds)  # connect, movie ids, parse + validate
        writes.append(report.write_seconds)  # lock, delete, COPY, quarantine, commit
        ceiling.append(_bare_copy(url, frames[d]))
    from movierec_assets.ingest.daily_asset import build_daily_partitioned_ratings

    span = DayRange(days[0], days[-1], "bench")
    asset = build_daily_partitioned_ratings(daily_partitions_for(span), span)
    instance = dg.DagsterInstance.ephemeral()
    whole, step = [], []
    for d in days[n_days:]:
        seconds, result = _timed(lambda d=d: dg.materialize(
            [asset], partition_key=d.isoformat(), instance=instance, resources={"postgres": PostgresResource()}))
        whole.append(seconds)
        step.append(result.asset_materializations_for_node(asset.key.path[-1])[0].metadata["load_seconds"].value)
    med = statistics.median
    return {
        "history_rows": n_history, "days": n_days, "rows_per_day_median": med(rows),
        "load_days_seconds_median": med(compute), "load_days_seconds_max": max(compute),
        "connect_read_validate_seconds_median": med(reads), "write_commit_seconds_median": med(writes),
        "asset_load_seconds_median": med(step), "materialize_run_seconds_median": med(whole),
        "ceiling_bare_copy_seconds_median": med(ceiling),
        "ratio_ceiling_to_load": med(ceiling) / med(compute),
    }


def bench_backfill(url: str, landing: Path, with_dagster: bool) -> dict[str, Any]:
    import dagster as dg

    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect
    from movierec_assets.ingest.daily_asset import build_daily_partitioned_ratings
    from movierec_assets.ingest.days import load_days
    from movierec_assets.ingest.replay import replay
    from movierec_assets.movielens.source import read_movies, scan_ratings
    from movierec_assets.movielens.split import compute_split, future_frame
    from movierec_assets.partitions import daily_partitions_for, day_range_for
    from movierec_assets.resources.database import PostgresResource

    manifest = compute_split(scan_ratings(ML_SMALL), dataset_id="ml-small", source_dir=str(ML_SMALL))
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.rejected_ratings, movielens.movies")
        bulk.ingest(conn, "movielens", "movies", read_movies(ML_SMALL))
        conn.commit()
    replay_s, written = _timed(lambda: replay(ML_SMALL, landing, manifest=manifest))
    days = manifest.future_days()
    first_s, report = _timed(lambda: load_days(url, days, landing))
    again_s, _ = _timed(lambda: load_days(url, days, landing))  # a re-run replaces every day
    future = future_frame(scan_ratings(ML_SMALL), manifest).with_columns(
        partition_day=pl.col("rated_at").dt.date()).collect()
    out: dict[str, Any] = {
        "days": len(days), "rows": report.rows_loaded, "replay_seconds": replay_s, "files_written": len(written),
        "load_days_seconds": first_s, "read_validate_seconds": report.read_seconds,
        "write_seconds": report.write_seconds, "reload_seconds": again_s,
        "ceiling_bare_copy_seconds": _bare_copy(url, future),
    }
    if with_dagster:
        span = day_range_for(manifest.cutoff_day, manifest.last_day, manifest.dataset_id)
        asset = build_daily_partitioned_ratings(daily_partitions_for(span), span)
        tags = {"dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat()}
        seconds, result = _timed(lambda: dg.materialize([asset], tags=tags, instance=dg.DagsterInstance.ephemeral(),
                                                        resources={"postgres": PostgresResource()}))
        out["dagster_single_run_seconds"] = seconds
        out["dagster_asset_load_seconds"] = result.asset_materializations_for_node(
            asset.key.path[-1])[0].metadata["load_seconds"].value
    return out


def _print(one: dict[str, Any], back: dict[str, Any]) -> None:
    print(f"\nOne day (~{one['rows_per_day_median']:,.0f} ratings) on {one['history_rows']:,} history rows, "
          f"median of {one['days']} days")
    print(f"  {'load_days (asset compute)':<40} {one['load_days_seconds_median']:8.3f} s  (max {one['load_days_seconds_max']:.3f})")
    print(f"    {'connect, movie ids, parse, validate':<38} {one['connect_read_validate_seconds_median']:8.3f} s")
    print(f"    {'lock, delete, COPY, commit':<38} {one['write_commit_seconds_median']:8.3f} s")
    print(f"  {'asset load_seconds in a Dagster run':<40} {one['asset_load_seconds_median']:8.3f} s")
    print(f"  {'whole dg.materialize run':<40} {one['materialize_run_seconds_median']:8.3f} s")
    print(f"  {'ceiling: bare COPY, UNLOGGED, no index':<40} {one['ceiling_bare_copy_seconds_median']:8.3f} s"
          f"  (ceiling/load = {one['ratio_ceiling_to_load']:.2f})")
    print(f"\nBackfill of ml-latest-small: {back['days']:,} days, {back['rows']:,} rows")
    for key in ("replay_seconds", "load_days_seconds", "read_validate_seconds", "write_seconds", "reload_seconds",
                "dagster_single_run_seconds", "dagster_asset_load_seconds", "ceiling_bare_copy_seconds"):
        if key in back:
            print(f"  {key:<40} {back[key]:8.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=3_000_000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--no-dagster-backfill", action="store_true", help="skip the 2,915-event Dagster run")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="movierec-bench-partitions-"))
    os.chmod(home, 0o755)
    os.environ["MOVIEREC_HOME"] = str(home)
    os.environ.pop("MOVIEREC_DATABASE_URL", None)
    from movierec_assets.db.embedded import EmbeddedPostgres
    from movierec_assets.db.migrations import prepare_database

    try:
        url = prepare_database()
        landing = home / "landing-synth"
        landing.mkdir()
        os.environ["MOVIEREC_LANDING_DIR"] = str(landing)
        one = bench_one_day(url, landing, args.days, args.per_day, args.history)
        landing_small = home / "landing-ml-small"
        landing_small.mkdir()
        os.environ["MOVIEREC_LANDING_DIR"] = str(landing_small)
        back = bench_backfill(url, landing_small, not args.no_dagster_backfill)
    finally:
        EmbeddedPostgres().stop()
        shutil.rmtree(home, ignore_errors=True)
    _print(one, back)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{os.cpu_count()} cores",
               "one_day": one, "backfill_ml_small": back}
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
