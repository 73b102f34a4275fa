"""Benchmark: the whole pipeline in-process vs on 2 Celery workers (issue 19), and multi-worker
training throughput.

Run: `python -m benchmarks.bench_workers [--dataset ml-small|synthetic] [--ratings 4000000]
[--days 3] [--workers 2] [--epochs N] [--training-epochs 3]`.

1. Pipeline: every unpartitioned asset (pipeline_job, with the champion gate), then `--days` daily
   partitions, on a fresh embedded server (one database per mode) under a temp MOVIEREC_HOME;
   first in this process (`execute_in_process`), then through `--workers` dagster-celery workers
   on a local Redis. Per step: its run time (STEP_START to STEP_SUCCESS) in each mode, and on the
   workers the dispatch delay (submitted to the broker -> started on a worker).
2. Training (`--training-epochs` > 0): the equivalence child (planted data, the training defaults)
   on 1 worker, then 2 MultiWorkerMirroredStrategy workers on 127.0.0.1; examples/s per worker.

Prints a markdown table and writes benchmarks/results/workers.json. The 1-minute load average is
recorded before and after each part: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.paths import ml_small
from movierec_assets_tests.ports import free_ports

RESULTS = Path(__file__).resolve().parent / "results" / "workers.json"
CHILD = Path(__file__).resolve().parents[1] / "movierec_assets_tests" / "ml" / "equivalence_child.py"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _dataset(args: argparse.Namespace, home: Path) -> tuple[Path, str]:
    if args.dataset == "ml-small":
        path = ml_small()
        if not (path / "ratings.csv").exists():
            raise SystemExit(f"ml-latest-small not found at {path} (set MOVIEREC_ML_SMALL)")
        return path, "ml-latest-small"
    from movierec_assets.movielens.synth import write_synthetic

    out = home / "datasets" / "synthetic"
    write_synthetic(out, n_ratings=args.ratings)
    return out, f"synthetic {args.ratings:,}"


def _mode(stack: Any, mode: str, epochs: int | None) -> dict[str, Any]:
    from movierec_assets.workers.runs import step_dispatch_seconds, step_workers
    from movierec_assets_tests.workers.support import run_everything

    instance = stack.use(mode)
    load0, t0 = _load(), time.perf_counter()
    runs = run_everything(instance, stack.days, distributed=mode == "celery", epochs=epochs)
    wall = time.perf_counter() - t0
    failed = [r.failure[-500:] for r in runs if not r.success]
    steps: dict[str, float] = {}
    dispatch: dict[str, float] = {}
    placed: dict[str, str] = {}
    for i, run in enumerate(runs):
        suffix = "" if i == 0 else f" [{stack.days[i - 1]}]"
        steps.update({k + suffix: v for k, v in run.steps.items()})
        if mode == "celery":
            dispatch.update({k + suffix: v for k, v in step_dispatch_seconds(instance, run.run_id).items()})
            placed.update({k + suffix: w[0] for k, w in step_workers(instance, run.run_id).items()})
    return {"wall_s": round(wall, 2), "runs": [round(r.seconds, 2) for r in runs], "steps": steps,
            "dispatch_s": dispatch, "worker": placed, "failed": failed, "load_before": load0, "load_after": _load()}


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from movierec_assets_tests.conftest import traversable_tmpdir
    from movierec_assets_tests.workers.support import open_stack

    home = traversable_tmpdir("movierec-bench-workers-")
    try:
        dataset, name = _dataset(args, home)
        stack = open_stack(home, dataset, args.days)
        try:
            inprocess = _mode(stack, "inprocess", args.epochs)
            t0 = time.perf_counter()
            stack.start_workers(args.workers)
            start_s = time.perf_counter() - t0
            celery = _mode(stack, "celery", args.epochs)
        finally:
            stack.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"dataset": name, "days": args.days, "workers": args.workers, "workers_start_s": round(start_s, 2),
            "inprocess": inprocess, "celery": celery}


def train_workers(n: int, epochs: int, tmp: Path) -> list[dict[str, Any]]:
    """`n` equivalence children (1: the default strategy; more: MultiWorkerMirroredStrategy)."""
    ports, procs = free_ports(n), []
    for i in range(n):
        env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "MOVIEREC_TRAIN_STRATEGY")}
        if n > 1:
            env["MOVIEREC_TRAIN_STRATEGY"] = "multi_worker"
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                           "task": {"type": "worker", "index": i}})
        out = tmp / f"{n}-{i}.json"
        procs.append((subprocess.Popen([sys.executable, str(CHILD), str(tmp / f"run-{n}"), str(out), str(epochs)],  # noqa: S603
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    results = []
    for proc, out in procs:
        log, _ = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(log[-3000:])
        results.append(json.loads(out.read_text()))
    return results


def training(epochs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="movierec-bench-mwms-"))
    try:
        out: dict[str, Any] = {"epochs": epochs, "load_before": _load()}
        for n in (1, 2):
            rows = train_workers(n, epochs, tmp)
            chief = next(r for r in rows if r.get("chief", True))
            out[f"{n}_worker"] = {"holdout_rmse": chief.get("holdout_rmse"), "ndcg_at_10": chief.get("ndcg_at_10"),
                                  "seconds": round(max(r["seconds"] for r in rows), 2),
                                  "examples_per_second_per_worker": [round(r["examples_per_second"]) for r in rows]}
        out["load_after"] = _load()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    p = result["pipeline"]
    a, b = p["inprocess"], p["celery"]
    lines = [f"{p['dataset']}, pipeline_job + {p['days']} daily partitions; in-process vs {p['workers']} Celery workers "
             f"(load average {a['load_before']}-{b['load_after']})", "",
             "| step | in-process (s) | on a worker (s) | dispatch (s) | worker |", "|---|---:|---:|---:|---|"]
    for step, seconds in a["steps"].items():
        lines.append(f"| {step} | {seconds:.2f} | {b['steps'].get(step, float('nan')):.2f} | "
                     f"{b['dispatch_s'].get(step, float('nan')):.2f} | {b['worker'].get(step, '')} |")
    n = max(len(a["steps"]), 1)
    lines.append(f"| **whole run** | **{a['wall_s']:.1f}** | **{b['wall_s']:.1f}** | "
                 f"{(b['wall_s'] - a['wall_s']) / n:+.2f} per step | (workers started in {p['workers_start_s']:.1f} s) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["ml-small", "synthetic"], default="ml-small")
    parser.add_argument("--ratings", type=int, default=4_000_000, help="synthetic size")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="trained_model epochs (default: the asset's)")
    parser.add_argument("--training-epochs", type=int, default=3, help="0: skip the MWMS throughput part")
    args = parser.parse_args()
    result: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
                              "pipeline": pipeline(args)}
    if args.training_epochs:
        result["training"] = training(args.training_epochs)
    print(table(result))
    if "training" in result:
        print(json.dumps(result["training"], indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    kept = old.get(result["pipeline"]["dataset"], {})
    if "training" not in result and "training" in kept:  # --training-epochs 0 keeps the last measurement
        result["training"] = kept["training"]
    old[result["pipeline"]["dataset"]] = result
    RESULTS.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
