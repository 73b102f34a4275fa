"""Continuous training (issue 18): replay N future days of a MovieLens-format dataset through the
real assets under each retraining policy, and measure what each buys per CPU second.

    python -m benchmarks.bench_continual --data DIR [--days 60] [--policies none,warm,full]
        [--epochs 3] [--seed 42] [--json OUT] [--png OUT]
    python -m benchmarks.bench_continual --report SAVED.json [--json OUT] [--png OUT]

Without `--data`: ml-latest-small (`$MOVIEREC_ML_SMALL`, else ../shared/movielens/ml-latest-small);
`--data synthetic` generates the synthetic default (`movierec data synth` at its defaults).

Each policy runs in its own process, with a fresh MOVIEREC_HOME and its own embedded PostgreSQL:
every asset once (history, features, a from-scratch `trained_model` through `champion_gate`,
serving), then per day (`continual_days`): the day's events are scored by the served champion
before the model sees them (Protocol A, `continual_score`: NDCG@10 / Recall@10 for warm and new
users, RMSE), then the day lands in the landing zone, the real `landing_zone_sensor` requests its
partition, `daily_partitioned_ratings` loads it, the features refresh, `trained_model` retrains
under the policy (`retrain_policy`: none | warm | full; `none` never retrains) and the serving
assets follow. Training seconds, CPU seconds (`time.process_time` of the training run, this
process's threads) and peak RSS are recorded per day, with the version served and the gate's
decision. A day that would serve a model the gate rejected stops the run.

Writes the JSON (default benchmarks/results/continual.json) and one PNG (default
docs/img/continual.png), and prints the summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.continual_days import PROGRESS
from benchmarks.continual_report import json_safe, plot, summarize, table_text
from benchmarks.paths import ROOT, ml_small
from benchmarks.run import RESULTS, machine

POLICIES = ("none", "warm", "full")
JSON_OUT = RESULTS / "continual.json"
PNG_OUT = ROOT / "docs" / "img" / "continual.png"


def _dataset(arg: str | None, work: Path) -> tuple[Path, str]:
    if arg == "synthetic":
        from movierec_assets.movielens.synth import DEFAULT_RATINGS, DEFAULT_SEED, write_synthetic

        out = work / "synthetic-default"
        write_synthetic(out, DEFAULT_RATINGS, DEFAULT_SEED)
        return out, "synthetic-default"
    path = Path(arg).absolute() if arg else ml_small()
    if not (path / "ratings.csv").exists():
        raise SystemExit(f"no ratings.csv in {path} (pass --data DIR or set MOVIEREC_ML_SMALL)")
    return path, path.name


def run_policy(policy: str, data: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One policy in a child process; its progress lines echoed, the rest of its output logged."""
    home = work / policy
    home.mkdir(mode=0o755)
    ctx = {"home": str(home), "data": str(data), "policy": policy, "days": args.days, "epochs": args.epochs,
           "seed": args.seed, "out": str(work / f"{policy}.json")}
    ctx_file = work / f"{policy}.ctx.json"
    ctx_file.write_text(json.dumps(ctx))
    log = work / f"{policy}.log"
    cmd = [sys.executable, "-m", "benchmarks.bench_continual", "--child", str(ctx_file)]
    started = time.perf_counter()
    with log.open("w") as sink, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=sink,  # noqa: S603
                                                 text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if line.startswith(PROGRESS):
                print(line.rstrip(), flush=True)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-8000:])
        raise RuntimeError(f"policy {policy} failed (exit {proc.returncode}); log above")
    result = json.loads(Path(ctx["out"]).read_text())
    result["wall_seconds"] = time.perf_counter() - started
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a MovieLens-format directory, or 'synthetic' (default: ml-latest-small)")
    ap.add_argument("--days", type=int, default=60, help="future days to replay")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated: none, warm, full")
    ap.add_argument("--epochs", type=int, default=3, help="trained_model epochs per training")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, default=JSON_OUT)
    ap.add_argument("--png", type=Path, default=PNG_OUT)
    ap.add_argument("--report", type=Path, help="re-summarise a saved run's JSON (no replay), then write --json/--png")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.policy_list = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = set(args.policy_list) - set(POLICIES)
    if unknown or not args.policy_list:
        ap.error(f"--policies: expected some of {', '.join(POLICIES)}, got {args.policies!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.child:
        from benchmarks.continual_days import child

        child(args.child)
        return {}
    if args.report:
        return report(json.loads(args.report.read_text()), args.json, args.png)
    from movierec_assets_tests.conftest import traversable_tmpdir  # mode 0755: the server's OS user enters

    work = traversable_tmpdir("movierec-bench-continual-")
    started_at, load0, t0 = datetime.now(UTC), os.getloadavg(), time.perf_counter()
    try:
        data, name = _dataset(args.data, work)
        results = [run_policy(p, data, args, work) for p in args.policy_list]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python -m benchmarks.bench_continual " + " ".join(argv if argv is not None else sys.argv[1:])
    payload = {"command": command, "dataset": name, "days": args.days, "epochs": args.epochs, "seed": args.seed,
               "policies": args.policy_list, "started_at": started_at.isoformat(timespec="seconds"),
               "total_wall_seconds": time.perf_counter() - t0, "loadavg_start": load0,
               "loadavg_end": os.getloadavg(), "machine": machine(),
               "rows": [d for r in results for d in r["days"]],
               "runs": [{k: v for k, v in r.items() if k != "days"} for r in results]}
    return report(payload, args.json, args.png)


def report(payload: dict[str, Any], json_out: Path, png_out: Path) -> dict[str, Any]:
    """Summary, table, JSON and PNG from a run's rows (also `--report JSON`: re-summarise a saved run)."""
    results = [{**run, "days": [d for d in payload["rows"] if d["policy"] == run["policy"]]}
               for run in payload["runs"]]
    summary = summarize(results)
    table = table_text(summary)
    print(f"\n{payload['command']}\n{table}")
    payload = {**payload, "summary": summary, "table_text": table}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(json_safe(payload), indent=1, default=str, allow_nan=False) + "\n")
    plot(results, png_out, f"{payload['dataset']}: {payload['days']} replayed days, next-day NDCG@10 (warm + new users)")
    print(f"wrote {json_out} and {png_out}")
    if not all(summary["invariants"].values()):
        raise SystemExit(f"an invariant failed: {summary['invariants']}")
    return payload


if __name__ == "__main__":
    main()
