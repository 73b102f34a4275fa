"""Growth curve: seconds per stage vs number of ratings (log-log), from `benchmarks.run` results.

    python -m benchmarks.plot_growth [benchmarks/results/run_1000000.json ...] [--out docs/img/growth.png]

Reads every `benchmarks/results/run_<N>.json` (synthetic runs) by default, plots each pipeline
stage's timed seconds against N with a dashed linear reference (slope 1 through the smallest run's
total), and prints each stage's log-log slope between the smallest and the largest run
(1 = linear, > 1 = faster than linear).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "img" / "growth.png"
STAGES = ["generate", "ingest", "partitions", "features", "train", "embeddings", "recommend"]


def load_runs(files: list[Path]) -> list[dict[str, Any]]:
    """Synthetic runs, one per size (the most recent when a size ran more than once)."""
    latest: dict[int, dict[str, Any]] = {}
    for f in files:
        r = json.loads(f.read_text())
        if not r.get("data") and r["started_at"] >= latest.get(r["ratings"], {}).get("started_at", ""):
            latest[r["ratings"]] = r
    return [latest[n] for n in sorted(latest)]


def slopes(runs: list[dict[str, Any]]) -> dict[str, float]:
    """log-log slope of each stage's seconds between the smallest and the largest run."""
    lo, hi = runs[0], runs[-1]
    span = math.log(hi["ratings"] / lo["ratings"])
    return {s: math.log(hi["stages"][s]["seconds"] / lo["stages"][s]["seconds"]) / span
            for s in STAGES if s in lo["stages"] and s in hi["stages"]}


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    xs = [r["ratings"] for r in runs]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for stage in STAGES:
        ys = [r["stages"][stage]["seconds"] for r in runs if stage in r["stages"]]
        if len(ys) == len(xs):
            ax.plot(xs, ys, marker="o", label=stage)
    total0 = sum(runs[0]["stages"][s]["seconds"] for s in STAGES if s in runs[0]["stages"])
    ax.plot(xs, [total0 * x / xs[0] for x in xs], "k--", lw=1, label="linear (from smallest total)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ratings")
    ax.set_ylabel("seconds (timed work per stage)")
    loads = ", ".join(f"{r['ratings'] / 1e6:g}M: load {r['loadavg_start'][0]:.0f}" for r in runs)
    ax.set_title(f"movierec pipeline growth, {runs[-1]['machine']['nproc']} cores\n({loads})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    runs = load_runs(args.files or sorted(RESULTS.glob("run_*.json")))
    if len(runs) < 2:
        raise SystemExit("need at least two synthetic runs (benchmarks/results/run_<N>.json)")
    plot(runs, args.out)
    print(f"log-log slope, {runs[0]['ratings']:,} -> {runs[-1]['ratings']:,} ratings (1 = linear):")
    for stage, k in slopes(runs).items():
        print(f"  {stage:<12} {k:5.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
