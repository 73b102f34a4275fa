"""Benchmark: 32M ratings already in PostgreSQL -> features.user_features + features.movie_features.

Run: `python -m benchmarks.bench_features [--ratings 32000000] [--repeats 3]`.
Data: synthetic, shaped like ml-32m (200k users with heavy-tailed activity, 87k movies with Zipf
popularity, ~2M tags), loaded once with `bulk.ingest` into a fresh embedded server under a temp
MOVIEREC_HOME (or `$BENCH_FEATURES_HOME` to reuse one between runs; loading is never timed).
Ceiling, measured in the same run: the bare read of the same columns, plus compute on in-memory frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

N_USERS = 200_000
N_MOVIES = 87_000
N_TAGS = 2_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
T0 = int(datetime(1996, 1, 1, tzinfo=UTC).timestamp())
T1 = int(datetime(2023, 10, 1, tzinfo=UTC).timestamp())


def _genres(rng: np.random.Generator) -> list[list[str]]:
    from movierec_assets.features.compute import GENRES

    weights = np.array([8, 5, 2, 2, 12, 5, 4, 16, 2, 0.5, 4, 0.3, 1, 2, 6, 2, 6, 1, 1, 1], dtype=float)
    weights /= weights.sum()
    counts = rng.integers(1, 4, N_MOVIES)
    return [sorted({GENRES[i] for i in rng.choice(20, size=c, p=weights)}) for c in counts]


def synthetic_movies(rng: np.random.Generator) -> pl.DataFrame:
    years = rng.integers(1920, 2024, N_MOVIES).astype(np.int32)
    year = pl.Series("year", years).set(pl.Series(rng.random(N_MOVIES) < 0.01), None)
    ids = np.arange(1, N_MOVIES + 1, dtype=np.int32)
    return pl.DataFrame({
        "movie_id": ids,
        "title": [f"Movie {i}" for i in ids],
        "year": year,
        "genres": pl.Series(_genres(rng), dtype=pl.List(pl.String)),
    })


def synthetic_ratings(n: int, rng: np.random.Generator) -> pl.DataFrame:
    """Heavy-tailed user activity, Zipf movie popularity, per-user time spans, half-star ratings."""
    activity = np.cumsum(rng.lognormal(0.0, 1.2, N_USERS))
    users = np.minimum(np.searchsorted(activity / activity[-1], rng.random(n)), N_USERS - 1).astype(np.int32) + 1
    pop = 1.0 / np.arange(1, N_MOVIES + 1) ** 1.05
    cdf = np.cumsum(pop / pop.sum())
    movies = np.minimum(np.searchsorted(cdf, rng.random(n)), N_MOVIES - 1).astype(np.int32)
    movies = rng.permutation(N_MOVIES).astype(np.int32)[movies] + 1
    start = rng.integers(T0, T1, N_USERS)
    span = np.minimum(rng.exponential(2 * 365 * 86400, N_USERS), T1 - start)
    u0 = users - 1
    ts = start[u0] + (rng.random(n) * span[u0]).astype(np.int64)
    stars = np.clip(np.round(rng.normal(7.0, 2.0, n)), 1, 10).astype(np.float32) / 2
    frame = pl.DataFrame({
        "user_id": users,
        "movie_id": movies,
        "rating": stars,
        "rated_at": pl.Series(ts * 1_000_000).cast(pl.Datetime("us", "UTC")),
    })
    return frame.unique(["user_id", "movie_id", "rated_at"])


def synthetic_tags(rng: np.random.Generator) -> pl.DataFrame:
    movie = (rng.zipf(1.3, N_TAGS) % N_MOVIES + 1).astype(np.int32)
    ts = rng.integers(T0, T1, N_TAGS) * 1_000_000
    return pl.DataFrame({
        "user_id": rng.integers(1, N_USERS + 1, N_TAGS).astype(np.int32),
        "movie_id": movie,
        "tag": pl.Series(["tag"] * N_TAGS),
        "tagged_at": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
    })


# -- setup (never timed) --------------------------------------------------------------------------
def _rows(url: str) -> int:
    from movierec_assets.db import bulk

    return int(bulk.read_polars(url, "SELECT count(*) AS n FROM movielens.ratings")["n"][0])


def load(url: str, n: int) -> None:
    """Synthetic movies, tags and `n` ratings into movielens.*, then VACUUM (hint bits, stats)."""
    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect, connect

    rng = np.random.default_rng(42)
    started = time.perf_counter()
    ratings, movies, tags = synthetic_ratings(n, rng), synthetic_movies(rng), synthetic_tags(rng)
    print(f"generated {ratings.height:,} ratings in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.movies, movielens.tags")
        bulk.execute(conn, "ALTER TABLE movielens.ratings DROP CONSTRAINT ratings_pkey")
        bulk.ingest(conn, "movielens", "movies", movies)
        bulk.ingest(conn, "movielens", "tags", tags)
        bulk.ingest(conn, "movielens", "ratings", ratings)
        bulk.execute(conn, "ALTER TABLE movielens.ratings ADD CONSTRAINT ratings_pkey PRIMARY KEY (user_id, movie_id, rated_at)")
        conn.commit()
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE) movielens.ratings, movielens.movies, movielens.tags")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


# -- measurements (each in a fresh child process, so its peak RSS is its own) ----------------------
def _peak_rss_gb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the forking
    parent across exec, so a child of the data generator would report the generator's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_pipeline(url: str) -> dict[str, float]:
    """The product path: read+aggregate (2 streams), finalize, write both tables."""
    from movierec_assets.features.store import compute_from_database, write_feature_tables

    cpu0, started = _cpu_seconds(), time.perf_counter()
    frames = compute_from_database(url)
    mid = time.perf_counter()
    write_feature_tables(url, frames.users, frames.movies)
    end = time.perf_counter()
    return {**frames.timings.seconds, "write": end - mid, "total": end - started, "peak_rss_gb": _peak_rss_gb(),
            "client_cpu_seconds": _cpu_seconds() - cpu0, "load_avg_1m": os.getloadavg()[0],
            "users": frames.users.height, "movies": frames.movies.height}


def measure_bare_read(url: str) -> dict[str, float]:
    """Ceiling: the same columns over the same two TID-range streams, batches dropped on arrival."""
    from concurrent.futures import ThreadPoolExecutor

    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect
    from movierec_assets.features.store import PAGES_SQL, RATING_COLUMNS, READ_STREAMS

    pages = int(bulk.read_polars(url, PAGES_SQL)["pages"][0])
    bounds = [pages * i // READ_STREAMS for i in range(READ_STREAMS)] + [None]

    def stream(i: int) -> int:
        where = f"ctid >= '({bounds[i]},0)'::tid" + (f" AND ctid < '({bounds[i + 1]},0)'::tid" if bounds[i + 1] else "")
        with adbc_connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {RATING_COLUMNS} FROM movielens.ratings WHERE {where}")  # noqa: S608 -- ints
            return sum(b.num_rows for b in cur.fetch_record_batch())

    cpu0, started = _cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(READ_STREAMS) as pool:
        rows = sum(pool.map(stream, range(READ_STREAMS)))
    return {"read": time.perf_counter() - started, "rows": rows, "peak_rss_gb": _peak_rss_gb(),
            "client_cpu_seconds": _cpu_seconds() - cpu0}


def measure_memory_compute(url: str) -> dict[str, float]:
    """Ceiling for compute: both feature frames from ratings already in memory (read not timed)."""
    from movierec_assets.db import bulk
    from movierec_assets.features.compute import (
        movie_attributes,
        movie_features_from_sums,
        new_accumulator,
        reference_us,
        user_features_from_sums,
    )
    from movierec_assets.features.store import RATING_COLUMNS, read_movies, read_tag_counts

    ratings = bulk.read_polars(url, f"SELECT {RATING_COLUMNS} FROM movielens.ratings")  # noqa: S608
    attributes = movie_attributes(read_movies(url).lazy()).collect()
    tags = read_tag_counts(url, None)
    cpu0, started = _cpu_seconds(), time.perf_counter()
    acc = new_accumulator(attributes)
    acc.add(ratings)
    now = reference_us(acc, None)
    user_features_from_sums(acc.user_sums(), now)
    movie_features_from_sums(attributes, acc.movie_sums(now), tags)
    return {"compute": time.perf_counter() - started, "rows": ratings.height, "client_cpu_seconds": _cpu_seconds() - cpu0}


MEASURES = {"pipeline": measure_pipeline, "bare_read": measure_bare_read, "memory_compute": measure_memory_compute}


def _child(kind: str) -> dict[str, float]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_features", "--measure", kind],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs if key in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratings", type=int, default=32_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure", choices=sorted(MEASURES))
    args = parser.parse_args()
    if args.measure:  # child mode: the parent has put MOVIEREC_DATABASE_URL in our environment
        print(json.dumps(MEASURES[args.measure](os.environ["MOVIEREC_DATABASE_URL"])))
        return
    run(args.ratings, args.repeats)


def run(n: int, repeats: int) -> None:
    from movierec_assets.db.embedded import EmbeddedPostgres
    from movierec_assets.db.migrations import apply_migrations

    keep = os.environ.get("BENCH_FEATURES_HOME")
    home = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="movierec-bench-features-"))
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o755)  # the server runs as an unprivileged user that must traverse it
    os.environ["MOVIEREC_HOME"] = str(home)
    server = EmbeddedPostgres()
    try:
        url = server.ensure_running()
        os.environ["MOVIEREC_DATABASE_URL"] = url
        apply_migrations(url)
        if abs(_rows(url) - n) > n // 1000:
            load(url, n)
        results = report(url, repeats)
    finally:
        if not keep:
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def report(url: str, repeats: int) -> dict[str, object]:
    bare = [_child("bare_read") for _ in range(repeats)]
    memory = [_child("memory_compute") for _ in range(repeats)]
    pipeline = [_child("pipeline") for _ in range(repeats)]
    rows = int(bare[0]["rows"])
    total, read = _median(pipeline, "total"), _median(bare, "read")
    table = [
        ("read + aggregate (2 streams)", _median(pipeline, "read_aggregate")),
        ("finalize features", _median(pipeline, "finalize")),
        ("write both tables (swap)", _median(pipeline, "write")),
        ("TOTAL ratings -> tables", total),
        ("ceiling: bare read, same columns", read),
        ("ceiling: compute on in-memory frame", _median(memory, "compute")),
    ]
    print(f"\nfeatures benchmark: {rows:,} ratings, medians of {repeats} (target <= 20 s, <= 4 GB)")
    for label, seconds in table:
        print(f"  {label:<38} {seconds:7.2f} s")
    peak = max(r["peak_rss_gb"] for r in pipeline)
    print(f"  {'peak RSS (pipeline process)':<38} {peak:7.2f} GB")
    print(f"  {'client CPU seconds (pipeline)':<38} {_median(pipeline, 'client_cpu_seconds'):7.2f} s")
    print(f"  {'total / bare read':<38} {total / read:7.2f} x")
    print(f"  {'1-min load average during pipeline':<38} {_median(pipeline, 'load_avg_1m'):7.2f}  (2 cores)")
    print(f"  {'rows/s end to end':<38} {rows / total:10,.0f}")
    return {
        "ratings": rows, "repeats": repeats, "machine_cpus": os.cpu_count(),
        "median_seconds": dict(table), "peak_rss_gb": peak, "ratio_total_to_bare_read": total / read,
        "target_seconds": 20, "target_rss_gb": 4, "meets_target": total <= 20 and peak <= 4,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": {"pipeline": pipeline, "bare_read": bare, "memory_compute": memory},
    }


if __name__ == "__main__":
    main()
