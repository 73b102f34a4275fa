"""One policy of the continual replay, in its own process (`bench_continual --child`): a fresh
MOVIEREC_HOME with its own embedded PostgreSQL, every asset materialized once through the
persistent Dagster instance, then the day loop.

Each day: score the day with the served champion (`continual_score`), land the day's file
(`ingest.replay`), tick the real `landing_zone_sensor`, run the partition it requests
(`daily_partitioned_ratings`), then re-materialize downstream as the policy says: the features
(always), `trained_model` with its blocking `champion_gate` (not under `none`), and the serving
assets with `force` (the served movie tower sees the refreshed features). Downstream runs are
chosen here rather than by an automation tick, because under `none` automation would retrain.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dagster as dg  # noqa: E402

from benchmarks.bench_train import PeakRss  # noqa: E402

PIPELINE_JOB, DAILY_JOB, SENSOR = "pipeline_job", "daily_ratings_job", "landing_zone_sensor"
FEATURES = ["user_features", "movie_features", "scaling_stats"]
SERVING = ["movie_embeddings", "user_recommendations"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
PROGRESS = "[continual]"  # lines with this prefix are echoed by the parent


def policy_config(policy: str, epochs: int, seed: int) -> dict[str, Any]:
    """`trained_model`'s run config for `policy`: `retrain_policy` once ml/config.py has it;
    before that, `warm` is `warm_start: true` and `full` the defaults."""
    from movierec_assets.ml.config import flat_defaults

    fields: dict[str, Any] = {"epochs": epochs, "seed": seed}
    if "retrain_policy" in flat_defaults():
        fields["retrain_policy"] = policy
    elif policy == "warm":
        fields["warm_start"] = True
    return fields


@dataclass
class Stack:
    """The policy's instance, definitions and database, and the landing sensor's cursor."""

    policy: str
    url: str
    data_dir: Path
    landing: Path
    manifest: Any
    train_fields: dict[str, Any]
    instance: Any = None
    cursor: str | None = None
    rejected: set[str] = field(default_factory=set)

    def run(self, job: str, assets: list[str] | None = None, partition: str | None = None,
            ops: dict[str, Any] | None = None) -> Any:
        from movierec_assets.workers.runs import run_job

        keys = [dg.AssetKey(a) for a in assets] if assets else None
        config = {**QUIET, **({"ops": ops} if ops else {})}
        return run_job(self.instance, job, distributed=False, asset_keys=keys, partition=partition, run_config=config)

    def train(self, policy: str) -> dict[str, Any]:
        """trained_model + champion_gate; a rejected candidate fails the run's gate step only."""
        from movierec_assets.assets.ml import candidate_of_run
        from movierec_assets.ml import registry

        fields = {**self.train_fields, **policy_config(policy, self.train_fields["epochs"], self.train_fields["seed"])}
        cpu0, rss = time.process_time(), PeakRss()
        out = self.run(PIPELINE_JOB, ["trained_model"], ops={"trained_model": {"config": fields}})
        cpu, peak = time.process_time() - cpu0, rss.stop()
        version = candidate_of_run(self.instance, out.run_id)
        cost = {"train_seconds": out.seconds, "train_cpu_seconds": cpu,
                "train_step_seconds": out.steps.get("trained_model"), "train_peak_rss_mb": peak / 2**20}
        if version is None and out.success:  # e.g. an empty day under warm: nothing new to train on
            return {"candidate": None, "gate": "kept", "gate_reason": "no new version", **cost}
        decided = registry.decision(self.url, version) if version else None
        if decided is None or (not out.success and decided.decision != "rejected"):
            raise RuntimeError(f"training run {out.run_id} failed: {out.failure[-3000:]}")
        if decided.decision == "rejected":
            self.rejected.add(decided.version)
        return {"candidate": version, "gate": decided.decision, "gate_reason": decided.reason, **cost}

    def serve(self) -> float:
        out = self.run(PIPELINE_JOB, SERVING, ops={a: {"config": {"force": True}} for a in SERVING})
        if not out.success:
            raise RuntimeError(f"serving run failed: {out.failure[-3000:]}")
        return out.seconds

    def land(self, day: Any) -> tuple[int, float]:
        """The day's file into the landing zone, the sensor's requests run; (requests, seconds)."""
        from movierec_assets.definitions import current_definitions
        from movierec_assets.ingest.replay import replay

        started = time.perf_counter()
        written = replay(self.data_dir, self.landing, days=1, manifest=self.manifest)
        if written != [day]:
            raise RuntimeError(f"expected to land {day}, landed {written}")
        defs = current_definitions()
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=defs)
        result = defs.resolve_sensor_def(SENSOR)(context)
        # The sensor returns its cursor in the SensorResult (a skip stores it on the context).
        self.cursor = result.cursor if isinstance(result, dg.SensorResult) and result.cursor else context.cursor
        requests = result.run_requests if isinstance(result, dg.SensorResult) else []
        if len(requests) != 1 or requests[0].partition_key != day.isoformat():
            raise RuntimeError(f"landing {day}: expected one run request for it, got "
                               f"{[r.partition_key or r.tags for r in requests]}")
        for request in requests:
            out = self.run(DAILY_JOB, partition=request.partition_key)
            if not out.success:
                raise RuntimeError(f"partition {request.partition_key} failed: {out.failure[-3000:]}")
        return len(requests), time.perf_counter() - started

    def refresh_features(self) -> float:
        out = self.run(PIPELINE_JOB, FEATURES)
        if not out.success:
            raise RuntimeError(f"features run failed: {out.failure[-3000:]}")
        return out.seconds


def open_stack(home: Path, data_dir: Path, policy: str, epochs: int, seed: int) -> Stack:
    """A fresh home and server (the real CLI bootstrap), and every asset materialized once with a
    from-scratch training (the same start for every policy)."""
    from movierec_assets.cli.bootstrap import bootstrap
    from movierec_assets.config import paths
    from movierec_assets.instance import get_instance

    os.environ["MOVIEREC_HOME"] = str(home)
    for var in ("MOVIEREC_DATABASE_URL", "MOVIEREC_LANDING_DIR"):
        os.environ.pop(var, None)
    env = bootstrap(data_dir)
    stack = Stack(policy, env.url, env.data_dir, paths().landing_ratings, env.manifest,
                  {"epochs": epochs, "seed": seed}, instance=get_instance())
    fields = {**stack.train_fields, **policy_config("full", epochs, seed)}
    out = stack.run(PIPELINE_JOB, ops={"trained_model": {"config": fields}})  # every unpartitioned asset
    if not out.success:
        raise RuntimeError(f"the initial materialization failed: {out.failure[-3000:]}")
    return stack


def replay_policy(home: Path, data_dir: Path, policy: str, n_days: int, epochs: int, seed: int) -> dict[str, Any]:
    """Every day of the window under `policy`: one row per day (see `bench_continual`)."""
    from benchmarks.continual_score import DayScorer
    from movierec_assets.ml import registry
    from movierec_assets.ml.evaluate import load_dataset

    started = time.perf_counter()
    stack = open_stack(home, data_dir, policy, epochs, seed)
    setup_s = time.perf_counter() - started
    initial = registry.current_champion(stack.url)
    assert initial is not None
    scorer = DayScorer(load_dataset(stack.data_dir), stack.url, stack.manifest.cutoff_day)
    rows = []
    for i, day in enumerate(stack.manifest.future_days()[:n_days]):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"policy": policy, "day_index": i, "day": day.isoformat(), **scorer.score(day)}
        row["score_seconds"] = time.perf_counter() - t0
        row["partition_runs"], row["land_seconds"] = stack.land(day)
        row["features_seconds"] = stack.refresh_features()
        row |= stack.train(policy) if policy != "none" else {"gate": None, "candidate": None, "train_seconds": 0.0,
                                                               "train_cpu_seconds": 0.0}
        row["serve_seconds"] = stack.serve()
        row["day_seconds"] = time.perf_counter() - t0
        row |= served_after(stack, registry)
        rows.append(row)
        print(f"{PROGRESS} {policy} day {i + 1}/{n_days} {day}: {row['known_events']} scored events, "
              f"NDCG@10 {row['all_ndcg_at_10']}, gate {row['gate']}, {row['day_seconds']:.1f} s", flush=True)
    from benchmarks.run import vm_hwm_bytes

    return {"policy": policy, "initial_version": initial.version, "setup_seconds": setup_s,
            "rejected_versions": sorted(stack.rejected), "process_peak_rss_mb": vm_hwm_bytes() / 2**20,
            "days": rows}


def served_after(stack: Stack, registry: Any) -> dict[str, Any]:
    """The champion after the day's update, and whether the gate ever rejected it (it must not)."""
    champion = registry.current_champion(stack.url)
    decided = registry.decision(stack.url, champion.version) if champion else None
    rejected = champion is None or champion.version in stack.rejected or (decided and decided.decision != "promoted")
    if rejected:
        raise AssertionError(f"{stack.policy}: serving {champion.version if champion else None}, which the gate "
                             "did not promote")
    return {"served_after": champion.version, "served_rejected": False}


def child(ctx_file: Path) -> None:
    """Entry point of the per-policy process: the context in, the rows to `ctx['out']`."""
    ctx = json.loads(ctx_file.read_text())
    from movierec_assets.cli.demo import hide_lifecycle_warnings
    from movierec_assets.db.embedded import EmbeddedPostgres

    hide_lifecycle_warnings()
    try:
        result = replay_policy(Path(ctx["home"]), Path(ctx["data"]), ctx["policy"], ctx["days"], ctx["epochs"],
                               ctx["seed"])
    finally:
        EmbeddedPostgres().stop()  # this policy's own server (its MOVIEREC_HOME)
    Path(ctx["out"]).write_text(json.dumps(result, default=str))
