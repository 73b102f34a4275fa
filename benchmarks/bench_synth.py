"""Benchmark: the synthetic MovieLens generator (target: 32M ratings in < 120 s, peak RSS < 4 GB).

Run: `python -m benchmarks.bench_synth [--ratings 32000000] [--repeats 3]`.
Each run is a fresh child process, so its peak RSS (from `os.wait4`) is its own.
Ceiling, measured in the same run: writing the same number of rows of a constant, prepared
1M-row ratings frame with the same writer (Polars `write_csv`, chunks appended to one file):
what the CSV writer alone costs on this machine. Ratio = ceiling seconds / synth seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"
TARGET_S = 120.0
TARGET_RSS_MB = 4096.0


def _child_synth(n: int, out: Path) -> None:
    from movierec_assets.movielens.synth import write_synthetic

    started = time.perf_counter()
    write_synthetic(out, n, seed=42)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _child_ceiling(n: int, out: Path) -> None:
    import numpy as np
    import polars as pl

    from movierec_assets.movielens.synth import CHUNK_RATINGS

    rng = np.random.default_rng(0)
    size = min(n, CHUNK_RATINGS)
    frame = pl.DataFrame(
        {
            "userId": np.sort(rng.integers(1, 200_000, size)).astype(np.int32),
            "movieId": rng.integers(1, 87_000, size).astype(np.int32),
            "rating": (rng.integers(1, 11, size) / 2).astype(np.float32),
            "timestamp": rng.integers(1_100_000_000, 1_700_000_000, size),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(out / "ratings.csv", "wb") as fh:
        written = 0
        while written < n:
            part = frame.head(n - written)
            part.write_csv(fh, include_header=written == 0, float_precision=1)
            written += part.height
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _run_child(kind: str, n: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix=f"bench-synth-{kind}-"))
    try:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_synth",
            "--child",
            kind,
            "--ratings",
            str(n),
            "--out",
            str(out),
        ]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        if status != 0:
            raise RuntimeError(f"{kind} child failed (status {status})")
        lines = _count_lines(out / "ratings.csv")
        if lines != n + 1:
            raise RuntimeError(f"{kind} wrote {lines - 1} rows, expected {n}")
        size_mb = (out / "ratings.csv").stat().st_size / 2**20
        inner = json.loads(stdout.strip().splitlines()[-1])["seconds"]
        return {
            "seconds": inner,
            "wall_seconds": wall,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "csv_mb": size_mb,
            "load_1min_after": os.getloadavg()[0],
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            n += block.count(b"\n")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratings", type=int, default=32_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["synth", "ceiling"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "synth":
        return _child_synth(args.ratings, args.out)
    if args.child == "ceiling":
        return _child_ceiling(args.ratings, args.out)

    n = args.ratings
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {"synth": [], "ceiling": []}
    for i in range(args.repeats):
        for kind in ("synth", "ceiling"):
            runs[kind].append(_run_child(kind, n))
            print(f"  run {i + 1}/{args.repeats} {kind}: {runs[kind][-1]['seconds']:.1f} s", flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    ratio = med["ceiling"]["seconds"] / med["synth"]["seconds"]
    print(f"\nsynthetic MovieLens, {n:,} ratings, median of {args.repeats} (nproc={os.cpu_count()})")
    print(f"{'step':<10}{'seconds':>10}{'rows/s':>14}{'peak RSS MB':>14}{'CSV MB':>10}")
    for kind, m in med.items():
        print(
            f"{kind:<10}{m['seconds']:>10.1f}{n / m['seconds']:>14,.0f}{m['peak_rss_mb']:>14,.0f}{m['csv_mb']:>10,.0f}"
        )
    ok = med["synth"]["seconds"] < TARGET_S and med["synth"]["peak_rss_mb"] < TARGET_RSS_MB
    print(
        f"ratio ceiling/synth: {ratio:.2f}; target < {TARGET_S:.0f} s and < {TARGET_RSS_MB:.0f} MB: {'met' if ok else 'MISSED'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "ratings": n,
                "repeats": args.repeats,
                "nproc": os.cpu_count(),
                "median": {k: {**m, "rows_per_s": n / m["seconds"]} for k, m in med.items()},
                "ratio_ceiling_over_synth": ratio,
                "target_seconds": TARGET_S,
                "target_peak_rss_mb": TARGET_RSS_MB,
                "target_met": ok,
                "runs": runs,
                # The 2 cores are shared: the 1/5/15-minute load averages around the runs.
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"load average before {load_before}, after {os.getloadavg()}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
