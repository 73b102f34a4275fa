"""`movierec demo`: the whole pipeline, headless, through the persistent Dagster instance.

Runs land in the instance's PostgreSQL storage, so `movierec dev` shows them afterwards. The
terminal shows one line per phase and a summary; the full log (Dagster's run logs, Python logging,
TensorFlow) goes to `$MOVIEREC_HOME/logs/demo-<UTC time>.log`, and `--verbose` shows it live too.
"""

from __future__ import annotations

import time
import uuid
import warnings
from pathlib import Path
from typing import Any, TextIO

import click
import dagster as dg

from movierec_assets.cli.bootstrap import bootstrap
from movierec_assets.cli.progress import LogCapture, Phase, Phases, count_materializations, log_path
from movierec_assets.config import movierec_home, paths
from movierec_assets.db.connect import connect
from movierec_assets.definitions import current_definitions
from movierec_assets.ingest.replay import replay
from movierec_assets.instance import get_instance

DAILY_ASSET = "daily_partitioned_ratings"
TRAINED_MODEL = "trained_model"
PIPELINE_JOB = "pipeline_job"
# Step-level progress in the log file, without Dagster's per-event DEBUG chatter.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
LANDING_SENSOR = "landing_zone_sensor"
TABLES = ["movielens.movies", "movielens.ratings", "movielens.rejected_ratings", "features.user_features",
          "features.movie_features", "ml.model_versions", "ml.movie_embeddings", "ml.user_recommendations"]


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A MovieLens directory (default: the synthetic demo dataset).")
@click.option("--days", default=7, show_default=True, type=click.IntRange(min=0),
              help="Future days to replay through the landing zone; 0 means history only.")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Training epochs for trained_model (default: the asset's own default).")
@click.option("--verbose", is_flag=True, help="Show the full log live (it always goes to the log file).")
def demo(data_dir: Path | None, days: int, epochs: int | None, verbose: bool) -> None:
    """Materialize every asset, replay DAYS days through the sensor and automation, print a summary."""
    hide_lifecycle_warnings()
    started = time.monotonic()
    log = log_path(movierec_home().absolute(), "demo")
    with LogCapture(log, verbose=verbose) as capture:
        phases = Phases(capture.terminal, 6 if days else 3, bars=not verbose)
        phases.line(f"movierec demo (full log: {log})")
        url, failed = _run_demo(phases, data_dir, days, epochs)
        _summary(capture.terminal, url, time.monotonic() - started, log)
    if failed:
        raise click.ClickException(f"demo phases failed: {', '.join(failed)} (details in {log})")


def hide_lifecycle_warnings() -> None:
    """Dagster's beta/preview notices about APIs this project chose on purpose are not news to a user."""
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)


def _run_demo(phases: Phases, data_dir: Path | None, days: int, epochs: int | None) -> tuple[str, list[str]]:
    """Every phase in order; returns the database URL and the labels of the phases that failed."""
    failed: list[str] = []

    def record(label: str, phase: Phase) -> None:
        if phase.failed or "FAILED" in phase.outcome:
            failed.append(label)

    with phases.phase("server, schema and dataset", unit="") as phase:
        env = bootstrap(data_dir)
        instance = get_instance()
        phase.outcome = f"dataset {env.data_dir.name}"
    with phases.phase("materialize every asset") as phase:
        _materialize_unpartitioned(instance, epochs, phase)
    record("materialize every asset", phase)
    with phases.phase("automation baseline tick") as phase:
        _run_automation(instance, epochs, phase)
    record("automation baseline tick", phase)
    if days:
        _replay_phases(phases, instance, env, days, epochs, record)
    return env.url, failed


def _replay_phases(phases: Phases, instance: Any, env: Any, days: int, epochs: int | None, record: Any) -> None:
    with phases.phase(f"replay {days} day(s)", unit="") as phase:
        written = replay(env.data_dir, paths().landing_ratings, days=days, until=None,
                         manifest=getattr(env, "manifest", None))
        phase.outcome = f"{len(written)} new landing file(s)"
    with phases.phase("landing sensor, partition runs", unit="runs") as phase:
        _run_partition_requests(instance, _evaluate_landing_sensor(instance), phase)
    record("partition runs", phase)
    with phases.phase("downstream automation") as phase:
        _run_automation(instance, epochs, phase)
    record("downstream automation", phase)


def _materialize_unpartitioned(instance: Any, epochs: int | None, phase: Phase) -> None:
    defs = current_definitions()
    job = defs.resolve_job_def(PIPELINE_JOB)
    keys = sorted(job.asset_layer.executable_asset_keys, key=lambda k: k.to_user_string())
    click.echo(f"materializing {len(keys)} assets: {', '.join(k.to_user_string() for k in keys)}")
    phase.grow(len(keys))
    result = _run_pipeline(instance, keys, epochs, {}, phase)
    if not result.success and _only_gate_rejected(result):
        phase.outcome = f"{len(keys)} assets; new model rejected by champion_gate"
    else:
        phase.outcome = f"{'' if result.success else 'FAILED: '}{len(keys)} assets (run {result.run_id[:8]})"


def _run_pipeline(instance: Any, keys: list[Any], epochs: int | None, tags: dict[str, str], phase: Phase,
                  offset: int = 0) -> Any:
    """Run `pipeline_job` (or the subset `keys` of it, with their checks) in this process."""
    defs = current_definitions()
    run_config: dict[str, Any] = dict(RUN_CONFIG)
    if epochs is not None and any(k.path[-1] == TRAINED_MODEL for k in keys):
        run_config["ops"] = {TRAINED_MODEL: {"config": {"epochs": epochs}}}
    job = defs.resolve_job_def(PIPELINE_JOB)
    run_id = str(uuid.uuid4())
    with count_materializations(instance, run_id, phase, offset):
        return job.execute_in_process(instance=instance, asset_selection=keys, run_config=run_config, tags=tags,
                                      raise_on_error=False, run_id=run_id)


def _evaluate_landing_sensor(instance: Any) -> list[Any]:
    defs = current_definitions()
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    # The daemon keeps its own cursor; the run keys tagged below dedupe across both.
    context = dg.build_sensor_context(instance=instance, cursor=_load_cursor(instance), definitions=defs)
    result = sensor(context)
    _save_cursor(instance, context.cursor)
    if isinstance(result, dg.SkipReason) or result is None:
        return []
    run_requests = result.run_requests if isinstance(result, dg.SensorResult) else list(result)
    return [r for r in run_requests if isinstance(r, dg.RunRequest)]


_CURSOR_KEY = "movierec/demo_landing_cursor"
_AUTOMATION_CURSOR_KEY = "movierec/demo_automation_cursor"


def _load_cursor(instance: Any, key: str = _CURSOR_KEY) -> str | None:
    """A cursor the demo keeps in the instance's key-value store, across demo runs."""
    return instance.run_storage.get_cursor_values({key}).get(key)


def _save_cursor(instance: Any, cursor: str | None, key: str = _CURSOR_KEY) -> None:
    if cursor is not None:
        instance.run_storage.set_cursor_values({key: cursor})


def _run_partition_requests(instance: Any, requests: list[Any], phase: Phase) -> None:
    defs = current_definitions()
    job = defs.resolve_job_def("daily_ratings_job")
    phase.grow(len(requests))
    ok = 0
    for done, request in enumerate(requests, start=1):
        tags = {**(request.tags or {}), "dagster/sensor_name": LANDING_SENSOR}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        result = job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=tags,
                                        raise_on_error=False, run_config=RUN_CONFIG)
        ok += int(result.success)
        phase.set_done(done)
    phase.outcome = f"{ok}/{len(requests)} runs succeeded" + ("" if ok == len(requests) else " FAILED")


def _run_automation(instance: Any, epochs: int | None, phase: Phase, max_rounds: int = 4) -> None:
    """Tick the automation conditions like the daemon would, running what they request."""
    defs = current_definitions()
    graph_keys = list(defs.resolve_asset_graph().get_all_asset_keys())
    cursor = _load_automation_cursor(instance)
    materialized: list[str] = []
    phase.outcome = "nothing requested"
    for _ in range(max_rounds):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        _save_automation_cursor(instance, cursor)
        keys = [k for k in graph_keys if k.path[-1] != DAILY_ASSET and result.get_num_requested(k) > 0]
        if not keys:
            break
        names = sorted(k.to_user_string() for k in keys)
        click.echo(f"automation requested: {', '.join(names)}")
        phase.grow(len(keys))
        run = _run_pipeline(instance, keys, epochs, {"movierec/automation": "demo"}, phase, len(materialized))
        materialized.extend(names)
        phase.outcome = f"{len(materialized)} asset(s) re-materialized"
        if not run.success:
            if _only_gate_rejected(run):
                phase.outcome += "; new model rejected by champion_gate"
                return
            phase.outcome = f"FAILED while materializing {', '.join(names)}"
            return


def _only_gate_rejected(run: Any) -> bool:
    """True when the one failed step is the blocking champion gate: a rejected candidate, by design."""
    failed = {e.step_key for e in run.get_step_failure_events()}
    gate_failed = any(not e.passed for e in run.get_asset_check_evaluations())
    return gate_failed and all(key and key.endswith("champion_gate") for key in failed)


def _load_automation_cursor(instance: Any) -> Any:
    raw = _load_cursor(instance, _AUTOMATION_CURSOR_KEY)
    return dg.deserialize_value(raw) if raw else None


def _save_automation_cursor(instance: Any, cursor: Any) -> None:
    _save_cursor(instance, dg.serialize_value(cursor), _AUTOMATION_CURSOR_KEY)


def _summary(out: TextIO, url: str, seconds: float, log: Path) -> None:
    counts = _table_counts(url)
    out.write(f"\nSummary ({seconds:.1f} s)\n")
    cells = [f"{table:<27} {rows:>11,} rows" for table, rows in counts]
    for i in range(0, len(cells), 2):
        out.write("  " + "   ".join(cells[i:i + 2]) + "\n")
    out.write(f"Full log: {log}\nOpen the UI with `movierec dev` to see these runs.\n")
    out.flush()


def _table_counts(url: str) -> list[tuple[str, int]]:
    counts = []
    with connect(url) as conn:
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                continue
            counts.append((table, conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))  # noqa: S608
    return counts
