"""The whole pipeline at ml-32m size on one machine, each stage against its ceiling (issue 7).

    python -m benchmarks.run --ratings 32000000 [--out benchmarks/results/run_32000000.json]
    python -m benchmarks.run --data DIR          # a real MovieLens directory instead of synthetic data

A fresh embedded PostgreSQL server runs under a temp MOVIEREC_HOME (mode 0755 so the server's OS
user can traverse it). Stages, each in its own child process (`benchmarks/stages.py`):
generate -> ingest history (CSV -> validate -> load -> indexes -> swap, `load_history`) -> 30 days
of partitions (`replay` + `load_days`) -> features (+ scaling stats) -> one training epoch (the
real tf.data pipeline and model) -> movie embeddings -> top 10 for 1,000 users (`Recommender`).
Ceilings, same run: a bare ADBC COPY of the same Arrow rows into an UNLOGGED table without indexes;
`model.fit` on in-memory random tensors of the training shapes; bare numpy `E @ u` + argpartition.

Peak RSS per stage = VmHWM of that stage's child process (a fresh address space per exec). The
server's RSS is sampled every 0.25 s while a stage runs, summed over the postmaster and its
backends as private (RSS - shared) plus the largest shared part, so shared buffers count once.
With `--profile STAGE` that stage runs under cProfile and its top functions are written next to
the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ["generate", "ingest", "partitions", "features", "train", "embeddings", "recommend"]
# After the pipeline, outside its total: one more day lands and the champion is warm-updated (issue 18).
AFTER = ["warm_update"]
CEILINGS = {"ingest": "ingest_ceiling", "train": "train_ceiling"}
TARGETS = {"ingest_rows_per_s": 600_000, "load_over_ceiling": 0.8, "features_seconds": 20.0,
           "train_over_ceiling": 0.8, "pipeline_seconds": 20 * 60, "peak_rss_gb": 8.0,
           "warm_update_seconds": 30.0}


# -- child side ----------------------------------------------------------------------------------
def vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_child(stage: str, ctx_file: Path, profile_to: str | None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from benchmarks.stages import STAGES

    ctx = json.loads(ctx_file.read_text())
    if profile_to:
        import cProfile
        import io
        import pstats

        from benchmarks.paths import repo_relative

        prof = cProfile.Profile()
        out = prof.runcall(STAGES[stage], ctx)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
        Path(profile_to).write_text(repo_relative(text.getvalue()))  # no machine paths in results
    else:
        out = STAGES[stage](ctx)
    out["peak_rss_bytes"] = vm_hwm_bytes()
    print("@@RESULT " + json.dumps(out, default=str), flush=True)


# -- parent side ---------------------------------------------------------------------------------
class ServerRss:
    """Samples the PostgreSQL server's memory (postmaster + backends) on a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> int:
        import psutil

        private, shared = 0, 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                m = p.memory_info()
            except psutil.Error:
                continue
            private += m.rss - m.shared
            shared = max(shared, m.shared)
        return private + shared

    def cpu_seconds(self) -> float:
        """Server CPU so far: the postmaster, its live backends, and the reaped ones (children times)."""
        import psutil

        t = self.proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for p in self.proc.children(recursive=True):
            try:
                c = p.cpu_times()
            except psutil.Error:
                continue
            total += c.user + c.system
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            time.sleep(0.25)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _postmaster_pid() -> int:
    from movierec_assets.db.embedded import EmbeddedPostgres

    return int((EmbeddedPostgres().data_dir / "postmaster.pid").read_text().split()[0])


def stage(name: str, ctx: dict[str, Any], workdir: Path, pid: int, profile: set[str]) -> dict[str, Any]:
    ctx_file = workdir / "ctx.json"
    ctx_file.write_text(json.dumps(ctx))
    cmd = [sys.executable, "-m", "benchmarks.run", "--stage", name, "--ctx", str(ctx_file)]
    prof_path = RESULTS / f"profile_{name}_{ctx['label']}.txt"
    if name in profile:
        cmd += ["--profile-to", str(prof_path)]
    load0, server = os.getloadavg(), ServerRss(pid)
    print(f"[{datetime.now(UTC):%H:%M:%S}] {name} ...", flush=True)
    cpu0, server_cpu0 = _children_cpu(), server.cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    client_cpu, server_cpu = _children_cpu() - cpu0, server.cpu_seconds() - server_cpu0
    server_peak = server.stop()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-10000:])
        raise RuntimeError(f"stage {name} failed (exit {proc.returncode})")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("@@RESULT "))
    out = json.loads(line[len("@@RESULT "):])
    out |= {"wall_seconds": wall, "server_rss_bytes": server_peak, "loadavg_before": load0,
            "loadavg_after": os.getloadavg(), "client_cpu_seconds": client_cpu, "server_cpu_seconds": server_cpu,
            # share of the 2 cores the stage got: < 1 core-equivalent per busy process means it waited
            "cores_used": (client_cpu + server_cpu) / wall}
    if name in profile:
        out["profile"] = str(prof_path.relative_to(ROOT))
    print(f"    {out['seconds']:.1f} s (wall {wall:.1f} s), {out['rows']:,} rows, "
          f"peak RSS {out['peak_rss_bytes'] / 2**30:.2f} GB", flush=True)
    return out


def run_all(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from movierec_assets.db.embedded import EmbeddedPostgres
    from movierec_assets.db.migrations import apply_migrations

    data_dir = Path(args.data).absolute() if args.data else home / "data"
    label = str(args.ratings) if not args.data else Path(args.data).name
    ctx: dict[str, Any] = {"data_dir": str(data_dir), "ratings": args.ratings, "seed": args.seed,
                           "days": args.days, "batch_size": args.batch_size, "label": label}
    url = EmbeddedPostgres().ensure_running()
    apply_migrations(url)
    os.environ["MOVIEREC_DATABASE_URL"] = url
    pid = _postmaster_pid()
    stages: dict[str, Any] = {}
    names = PIPELINE if not args.data else PIPELINE[1:]
    for name in names:
        stages[name] = stage(name, ctx, home, pid, set(args.profile))
        if name in CEILINGS:
            if name == "train":
                ctx["train_shape"] = {k: stages["train"][k] for k in ("users", "movies", "user_features",
                                                                       "movie_features", "movie_id_rows")}
            stages[CEILINGS[name]] = stage(CEILINGS[name], ctx, home, pid, set(args.profile))
    for name in AFTER:
        stages[name] = stage(name, ctx, home, pid, set(args.profile))
    return stages


def summarize(stages: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Table rows (stage, rows, seconds, rows/s, peak RSS, ratio to ceiling) and the target checks."""
    def ratio(name: str) -> float | None:
        s = stages[name]
        if name == "ingest":  # the load's COPY vs the bare COPY of the same rows
            return stages["ingest_ceiling"]["seconds"] / s["load_copy_seconds"]
        if name == "train" and s.get("steady_examples_per_s"):
            return s["steady_examples_per_s"] / stages["train_ceiling"]["steady_examples_per_s"]
        if name == "recommend":
            return s["ceiling_seconds"] / s["seconds"]
        return None

    rows = []
    for name, s in stages.items():
        rows.append({"stage": name, "rows": s["rows"], "seconds": s["seconds"], "wall_seconds": s["wall_seconds"],
                     "rows_per_s": s["rows"] / s["seconds"] if s["seconds"] else None,
                     "peak_rss_gb": s["peak_rss_bytes"] / 2**30, "server_rss_gb": s["server_rss_bytes"] / 2**30,
                     "ratio_to_ceiling": ratio(name) if not name.endswith("_ceiling") else None,
                     "cores_used": s.get("cores_used", float("nan"))})
    product = [r for r in rows if r["stage"] in PIPELINE]
    ing = stages.get("ingest")
    checks = {
        "pipeline_wall_seconds": sum(r["wall_seconds"] for r in product),
        "pipeline_work_seconds": sum(r["seconds"] for r in product),
        "max_peak_rss_gb": max(r["peak_rss_gb"] for r in product),
        "max_server_rss_gb": max(r["server_rss_gb"] for r in rows),
    }
    targets = {"pipeline_le_20_min": checks["pipeline_wall_seconds"] <= TARGETS["pipeline_seconds"],
               "peak_rss_le_8_gb": checks["max_peak_rss_gb"] <= TARGETS["peak_rss_gb"]}
    if ing:
        checks["ingest_rows_per_s"] = ing["rows"] / ing["history_seconds"]
        checks["load_over_ceiling"] = ratio("ingest")
        targets["ingest_ge_600k_rows_per_s"] = checks["ingest_rows_per_s"] >= TARGETS["ingest_rows_per_s"]
        targets["load_ge_0.8_ceiling"] = checks["load_over_ceiling"] >= TARGETS["load_over_ceiling"]
    checks["features_seconds"] = stages["features"]["seconds"]
    targets["features_le_20_s"] = checks["features_seconds"] <= TARGETS["features_seconds"]
    checks["train_over_ceiling"] = ratio("train")
    targets["train_ge_0.8_ceiling"] = (checks["train_over_ceiling"] or 0) >= TARGETS["train_over_ceiling"]
    if "warm_update" in stages:
        checks["warm_update_seconds"] = stages["warm_update"]["seconds"]
        targets["warm_update_le_30_s"] = checks["warm_update_seconds"] <= TARGETS["warm_update_seconds"]
    return rows, {"measured": checks, "targets": targets}


def format_table(rows: list[dict[str, Any]], checks: dict[str, Any]) -> str:
    head = (f"| {'stage':<15} | {'rows':>12} | {'seconds':>8} | {'wall s':>7} | {'rows/s':>11} | "
            f"{'peak RSS GB':>11} | {'server RSS GB':>13} | {'vs ceiling':>10} | {'cores used':>10} |")
    lines = [head, "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        ratio = "" if r["ratio_to_ceiling"] is None else f"{r['ratio_to_ceiling']:.2f}"
        lines.append(f"| {r['stage']:<15} | {r['rows']:>12,} | {r['seconds']:>8.1f} | {r['wall_seconds']:>7.1f} | "
                     f"{r['rows_per_s'] or 0:>11,.0f} | {r['peak_rss_gb']:>11.2f} | {r['server_rss_gb']:>13.2f} | "
                     f"{ratio:>10} | {r['cores_used']:>10.2f} |")
    m = checks["measured"]
    lines.append("")
    lines.append(f"whole pipeline: {m['pipeline_wall_seconds']:.0f} s wall ({m['pipeline_work_seconds']:.0f} s of "
                 f"timed work); max stage peak RSS {m['max_peak_rss_gb']:.2f} GB; server RSS max "
                 f"{m['max_server_rss_gb']:.2f} GB")
    if "ingest_rows_per_s" in m:
        lines.append(f"history ingest end to end: {m['ingest_rows_per_s']:,.0f} rows/s; load COPY / ceiling "
                     f"{m['load_over_ceiling']:.2f}")
    lines.append(f"features: {m['features_seconds']:.1f} s; training steady rate / ceiling: "
                 f"{m['train_over_ceiling'] or float('nan'):.2f}")
    lines += [f"  {k}: {'PASS' if ok else 'MISS'}" for k, ok in checks["targets"].items()]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total_gb": round(mem / 2**20, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=32_000_000)
    ap.add_argument("--data", help="a real MovieLens directory (skips generation)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/run_<ratings>.json)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--profile", action="append", default=[], help="run this stage under cProfile (repeatable)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        run_child(args.stage, Path(args.ctx), args.profile_to)
        return
    home = Path(tempfile.mkdtemp(prefix="movierec-bench-run-"))
    os.chmod(home, 0o755)
    os.environ["MOVIEREC_HOME"] = str(home)
    for var in ("MOVIEREC_DATABASE_URL", "MOVIEREC_DATA_DIR", "MOVIEREC_LANDING_DIR"):
        os.environ.pop(var, None)
    started_at, load0, t0 = datetime.now(UTC), os.getloadavg(), time.perf_counter()
    try:
        stages = run_all(args, home)
    finally:
        from movierec_assets.db.embedded import EmbeddedPostgres

        EmbeddedPostgres().stop()
        shutil.rmtree(home, ignore_errors=True)
    rows, checks = summarize(stages)
    table = format_table(rows, checks)
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    print(f"\n{command}\n{table}")
    result = {"command": command, "started_at": started_at.isoformat(timespec="seconds"),
              "total_wall_seconds": time.perf_counter() - t0, "ratings": args.ratings, "data": args.data,
              "batch_size": args.batch_size, "days": args.days, "loadavg_start": load0,
              "loadavg_end": os.getloadavg(), "machine": machine(), "table": rows, **checks,
              "table_text": table, "stages": stages,
              "rss_method": "stage peak = VmHWM of the stage's own child process; server = postmaster + backends, "
                            "sum of (RSS - shared) + largest shared, sampled every 0.25 s"}
    out = Path(args.out) if args.out else RESULTS / f"run_{args.ratings if not args.data else Path(args.data).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
