"""Benchmark: history ingestion (issue 2, section 6) at 20M ratings.

Run: `python -m benchmarks.bench_ingest [--ratings 20000000] [--runs 3] [--psycopg-rows 2000000]`.

Data: a synthetic MovieLens directory (`movierec data synth`'s generator), written once under
`$BENCH_INGEST_DATA` (default: a temp folder). A fresh embedded server runs under a temp
MOVIEREC_HOME (or `$BENCH_INGEST_HOME` to reuse one). Every row of the file is treated as history.

Measured, median of `--runs` runs:
  (a) ceiling: COPY (ADBC adbc_ingest, COPY BINARY) of the in-memory Arrow rows into an UNLOGGED
      table with no indexes;
  (b) reference: a straightforward per-row `COPY ... FROM STDIN` through psycopg `copy.write_row`
      into the same kind of table, on the first `--psycopg-rows` rows (extrapolated as a rate);
  (c) our load step: `replace_history` (the COPY alone, and the whole transaction with the key
      and index builds and the swap);
  (d) end to end: ratings.csv -> parse_ratings_file -> validate_ratings -> replace_history.
Targets: (c) COPY >= 1.4M rows/s and >= 0.8 x (a); (d) >= 600k rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
TARGET_LOAD = 1_400_000
TARGET_RATIO = 0.8
TARGET_E2E = 600_000
BENCH_TABLE = "bench_ingest_copy"
COLUMNS_DDL = "user_id int NOT NULL, movie_id int NOT NULL, rating real NOT NULL, rated_at timestamptz NOT NULL"
SHAPED_DDL = ", partition_day date NULL, CHECK (rating BETWEEN 0.5 AND 5.0 AND rating * 2 = trunc(rating * 2))"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _prepare_data(n: int, seed: int) -> Path:
    from movierec_assets.movielens.synth import write_synthetic

    base = Path(os.environ.get("BENCH_INGEST_DATA") or Path(tempfile.gettempdir()) / "movierec-bench-ingest")
    root = base / f"synth-{n}-{seed}"
    if not (root / "ratings.csv").is_file():
        print(f"writing {n:,} synthetic ratings to {root} ...", flush=True)
        tmp = base / f".tmp-{os.getpid()}"
        write_synthetic(tmp, n, seed)
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(root)
    return root


def _fresh_unlogged(conn: Any, shaped: bool = False) -> None:
    from movierec_assets.db import bulk

    bulk.execute(conn, f"DROP TABLE IF EXISTS public.{BENCH_TABLE}")
    bulk.execute(conn, f"CREATE UNLOGGED TABLE public.{BENCH_TABLE} ({COLUMNS_DDL + (SHAPED_DDL if shaped else '')})")
    conn.commit()


def ceiling_copy(url: str, arrow: Any, shaped: bool = False) -> float:
    """(a) seconds for the bare ADBC COPY into an empty UNLOGGED table without indexes.

    `shaped`: the table also has movielens.ratings' partition_day column and rating CHECK (a
    diagnostic: what the table's shape costs, without indexes)."""
    from movierec_assets.db.connect import adbc_connect

    with adbc_connect(url) as conn:
        _fresh_unlogged(conn, shaped)
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.adbc_ingest(BENCH_TABLE, arrow, mode="append", db_schema_name="public")
        conn.commit()
        seconds = time.perf_counter() - started
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE public.{BENCH_TABLE}")
        conn.commit()
    return seconds


def psycopg_write_row(url: str, rows: list[tuple[Any, ...]]) -> float:
    """(b) seconds for a per-row COPY FROM STDIN (psycopg write_row) into an UNLOGGED table."""
    from movierec_assets.db.connect import connect

    with connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.{BENCH_TABLE}")
        conn.execute(f"CREATE UNLOGGED TABLE public.{BENCH_TABLE} ({COLUMNS_DDL})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY public.{BENCH_TABLE} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE public.{BENCH_TABLE}")
    return seconds


def _runs(label: str, runs: int, fn: Callable[[], Any]) -> list[Any]:
    out = []
    for i in range(runs):
        out.append(fn())
        print(f"  {label} run {i + 1}/{runs} done", flush=True)
    return out


def measure(n: int, runs: int, psycopg_rows: int, seed: int) -> dict[str, Any]:
    from movierec_assets.db.migrations import prepare_database
    from movierec_assets.ingest.history import load_movie_tables
    from movierec_assets.ingest.load import replace_history
    from movierec_assets.ingest.rules import empty_rejected
    from movierec_assets.ingest.validate import parse_ratings_file, validate_ratings
    from movierec_assets.movielens.source import read_movies

    data_dir = _prepare_data(n, seed)
    url = prepare_database()
    load_movie_tables(url, data_dir)
    known = read_movies(data_dir)["movie_id"]
    csv = data_dir / "ratings.csv"

    parsed = parse_ratings_file(csv)
    good, rejected = validate_ratings(parsed.good, known)
    rows = good.height
    arrow = good.select("user_id", "movie_id", "rating", "rated_at").to_arrow()

    subset = good.head(min(psycopg_rows, rows)).select("user_id", "movie_id", "rating", "rated_at").rows()
    reference = _runs("(b) psycopg write_row", runs, lambda: psycopg_write_row(url, subset))
    # (a) and (c) alternate, so that both see the same machine load (it is shared).
    pairs = _runs(
        "(a) ceiling + (c) replace_history",
        runs,
        lambda: (
            ceiling_copy(url, arrow),
            ceiling_copy(url, arrow, shaped=True),
            replace_history(url, good, empty_rejected(), str(csv)),
        ),
    )
    ceiling, shaped, ours = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]

    def end_to_end() -> tuple[float, float, float]:
        started = time.perf_counter()
        p = parse_ratings_file(csv)
        parsed_at = time.perf_counter()
        g, r = validate_ratings(p.good, known)
        validated_at = time.perf_counter()
        replace_history(url, g, pl.concat([p.rejected, r]), str(csv))
        done = time.perf_counter()
        return done - started, parsed_at - started, validated_at - parsed_at

    e2e = _runs("(d) end to end", runs, end_to_end)
    copy_s = _median([s.copy_seconds for s in ours])
    return {
        "rows": rows,
        "rejected": rejected.height + parsed.rejected.height,
        "runs": runs,
        "ceiling_seconds": _median(ceiling),
        "ceiling_shaped_seconds": _median(shaped),
        "psycopg_rows": len(subset),
        "psycopg_seconds": _median(reference),
        "load_copy_seconds": copy_s,
        "load_index_seconds": _median([s.index_seconds for s in ours]),
        "load_total_seconds": _median([s.seconds for s in ours]),
        "e2e_seconds": _median([e[0] for e in e2e]),
        "e2e_parse_seconds": _median([e[1] for e in e2e]),
        "e2e_validate_seconds": _median([e[2] for e in e2e]),
        "all_runs": {
            "ceiling": ceiling,
            "ceiling_shaped": shaped,
            "psycopg": reference,
            "load_copy": [s.copy_seconds for s in ours],
            "load_total": [s.seconds for s in ours],
            "e2e": [e[0] for e in e2e],
        },
    }


def report(m: dict[str, Any]) -> dict[str, Any]:
    rows = m["rows"]
    rate = {
        "ceiling_rows_per_s": rows / m["ceiling_seconds"],
        "ceiling_shaped_rows_per_s": rows / m["ceiling_shaped_seconds"],
        "psycopg_write_row_rows_per_s": m["psycopg_rows"] / m["psycopg_seconds"],
        "load_copy_rows_per_s": rows / m["load_copy_seconds"],
        "load_total_rows_per_s": rows / m["load_total_seconds"],
        "e2e_rows_per_s": rows / m["e2e_seconds"],
    }
    ratio = rate["load_copy_rows_per_s"] / rate["ceiling_rows_per_s"]
    checks = {
        "load_copy_ge_1.4M": rate["load_copy_rows_per_s"] >= TARGET_LOAD,
        "load_copy_ge_0.8_ceiling": ratio >= TARGET_RATIO,
        "e2e_ge_600k": rate["e2e_rows_per_s"] >= TARGET_E2E,
    }
    lines = [
        f"{'step':58s} {'seconds':>9s} {'rows/s':>12s}",
        f"{'(a) ceiling: ADBC COPY -> UNLOGGED, no indexes':58s} {m['ceiling_seconds']:9.2f} {rate['ceiling_rows_per_s']:12,.0f}",
        f"{'    same, with partition_day column + rating CHECK':58s} {m['ceiling_shaped_seconds']:9.2f} "
        f"{rate['ceiling_shaped_rows_per_s']:12,.0f}",
        f"{'(b) psycopg COPY FROM STDIN write_row (' + format(m['psycopg_rows'], ',') + ' rows)':58s} "
        f"{m['psycopg_seconds']:9.2f} {rate['psycopg_write_row_rows_per_s']:12,.0f}",
        f"{'(c) our load: COPY alone':58s} {m['load_copy_seconds']:9.2f} {rate['load_copy_rows_per_s']:12,.0f}",
        f"{'(c) our load: whole transaction (COPY + keys + swap)':58s} {m['load_total_seconds']:9.2f} "
        f"{rate['load_total_rows_per_s']:12,.0f}",
        f"{'    of which key/index builds':58s} {m['load_index_seconds']:9.2f}",
        f"{'(d) end to end: CSV -> validate -> load -> index -> swap':58s} {m['e2e_seconds']:9.2f} {rate['e2e_rows_per_s']:12,.0f}",
        f"{'    of which parse / validate':58s} {m['e2e_parse_seconds']:9.2f} / {m['e2e_validate_seconds']:.2f}",
        "",
        f"load COPY / ceiling = {ratio:.2f} (target >= {TARGET_RATIO})",
    ] + [f"{name}: {'PASS' if ok else 'MISS'}" for name, ok in checks.items()]
    print("\n".join(lines))
    return {**m, **rate, "load_over_ceiling": ratio, "targets": checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--psycopg-rows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    home = os.environ.get("BENCH_INGEST_HOME")
    temp_home = None if home else tempfile.mkdtemp(prefix="movierec-bench-ingest-")
    if temp_home:
        os.chmod(temp_home, 0o755)
    os.environ["MOVIEREC_HOME"] = home or temp_home or ""
    os.environ.pop("MOVIEREC_DATABASE_URL", None)
    load_before = os.getloadavg()
    try:
        result = report(measure(args.ratings, args.runs, args.psycopg_rows, args.seed))
    finally:
        if temp_home:
            from movierec_assets.db.embedded import EmbeddedPostgres

            EmbeddedPostgres().stop()
            shutil.rmtree(temp_home, ignore_errors=True)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
