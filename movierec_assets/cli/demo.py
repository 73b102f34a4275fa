"""`movierec demo`: the whole pipeline, headless, through the persistent Dagster instance.

Runs land in the instance's PostgreSQL storage, so `movierec dev` shows them afterwards.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import click

DAILY_ASSET = "daily_partitioned_ratings"
TRAINED_MODEL = "trained_model"
PIPELINE_JOB = "pipeline_job"
# Step-level progress, without Dagster's per-event DEBUG chatter.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
LANDING_SENSOR = "landing_zone_sensor"


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A MovieLens directory (default: the synthetic demo dataset).")
@click.option("--days", default=7, show_default=True, type=click.IntRange(min=0),
              help="Future days to replay through the landing zone; 0 means history only.")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Training epochs for trained_model (default: the asset's own default).")
def demo(data_dir: Path | None, days: int, epochs: int | None) -> None:
    """Materialize every asset, replay DAYS days through the sensor and automation, print a summary."""
    from movierec_assets.cli.bootstrap import bootstrap
    from movierec_assets.instance import get_instance

    warnings.filterwarnings("ignore", category=UserWarning)  # Dagster beta/preview notices
    started = time.monotonic()
    env = bootstrap(data_dir)
    instance = get_instance()
    click.echo(f"dataset: {env.data_dir}")
    steps: list[tuple[str, str]] = []
    steps.append(("initial materialization", _materialize_unpartitioned(instance, epochs)))
    steps.append(("automation baseline tick", _run_automation(instance, epochs)))
    if days:
        steps.extend(_replay_days(instance, env.data_dir, days, epochs))
    click.echo("\nSummary")
    for name, outcome in steps:
        click.echo(f"  {name:<32} {outcome}")
    failed = [name for name, outcome in steps if "FAILED" in outcome]
    for line in _table_counts(env.url):
        click.echo(f"  {line}")
    click.echo(f"  {'total seconds':<32} {time.monotonic() - started:.1f}")
    click.echo("Open the UI with `movierec dev` to see these runs.")
    if failed:
        raise click.ClickException(f"demo steps failed: {', '.join(failed)} (see the run logs above)")


def _materialize_unpartitioned(instance: Any, epochs: int | None) -> str:
    from movierec_assets.definitions import current_definitions

    defs = current_definitions()
    job = defs.get_job_def(PIPELINE_JOB)
    keys = sorted(job.asset_layer.executable_asset_keys, key=lambda k: k.to_user_string())
    click.echo(f"materializing {len(keys)} assets: {', '.join(k.to_user_string() for k in keys)}")
    result = _run_pipeline(instance, keys, epochs, tags={})
    if not result.success and _only_gate_rejected(result):
        return f"ok, but the new model did not pass champion_gate (run {result.run_id[:8]})"
    return f"{'ok' if result.success else 'FAILED'} ({len(keys)} assets, run {result.run_id[:8]})"


def _run_pipeline(instance: Any, keys: list[Any], epochs: int | None, tags: dict[str, str]) -> Any:
    """Run `pipeline_job` (or the subset `keys` of it, with their checks) in this process."""
    from movierec_assets.definitions import current_definitions

    defs = current_definitions()
    run_config: dict[str, Any] = dict(RUN_CONFIG)
    if epochs is not None and any(k.path[-1] == TRAINED_MODEL for k in keys):
        run_config["ops"] = {TRAINED_MODEL: {"config": {"epochs": epochs}}}
    job = defs.get_job_def(PIPELINE_JOB)
    return job.execute_in_process(instance=instance, asset_selection=keys, run_config=run_config, tags=tags,
                                  raise_on_error=False)


def _replay_days(instance: Any, data_dir: Path, days: int, epochs: int | None) -> list[tuple[str, str]]:
    from movierec_assets.config import paths
    from movierec_assets.ingest.replay import replay

    written = replay(data_dir, paths().landing_ratings, days=days, until=None)
    steps = [("replayed days", f"{len(written)} new landing files")]
    requests = _evaluate_landing_sensor(instance)
    steps.append(("landing_zone_sensor", f"{len(requests)} partition run(s) requested"))
    loaded = _run_partition_requests(instance, requests)
    steps.append(("daily partitions loaded", loaded))
    steps.append(("downstream automation", _run_automation(instance, epochs)))
    return steps


def _evaluate_landing_sensor(instance: Any) -> list[Any]:
    import dagster as dg

    from movierec_assets.definitions import current_definitions

    defs = current_definitions()
    sensor = defs.get_sensor_def(LANDING_SENSOR)
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


def _run_partition_requests(instance: Any, requests: list[Any]) -> str:
    from movierec_assets.definitions import current_definitions

    defs = current_definitions()
    job = defs.get_job_def("daily_ratings_job")
    ok = 0
    for request in requests:
        tags = {**(request.tags or {}), "dagster/sensor_name": LANDING_SENSOR}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        result = job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=tags,
                                        raise_on_error=False, run_config=RUN_CONFIG)
        ok += int(result.success)
    return f"{ok}/{len(requests)} runs succeeded"


def _run_automation(instance: Any, epochs: int | None, max_rounds: int = 4) -> str:
    """Tick the automation conditions like the daemon would, running what they request."""
    import dagster as dg

    from movierec_assets.definitions import current_definitions

    defs = current_definitions()
    graph_keys = list(defs.resolve_asset_graph().get_all_asset_keys())
    cursor = _load_automation_cursor(instance)
    materialized: list[str] = []
    for _ in range(max_rounds):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        _save_automation_cursor(instance, cursor)
        keys = [k for k in graph_keys if k.path[-1] != DAILY_ASSET and result.get_num_requested(k) > 0]
        if not keys:
            break
        names = sorted(k.to_user_string() for k in keys)
        materialized.extend(names)
        click.echo(f"automation requested: {', '.join(names)}")
        run = _run_pipeline(instance, keys, epochs, tags={"movierec/automation": "demo"})
        if not run.success:
            if _only_gate_rejected(run):
                return f"re-materialized {', '.join(materialized)}; the new model did not pass champion_gate, " \
                       "so the champion and its embeddings stay"
            return f"FAILED while materializing {', '.join(names)}"
    return f"re-materialized {', '.join(materialized) or 'nothing'}"


def _only_gate_rejected(run: Any) -> bool:
    """True when the one failed step is the blocking champion gate: a rejected candidate, by design."""
    failed = {e.step_key for e in run.get_step_failure_events()}
    gate_failed = any(not e.passed for e in run.get_asset_check_evaluations())
    return gate_failed and all(key and key.endswith("champion_gate") for key in failed)


def _load_automation_cursor(instance: Any) -> Any:
    from dagster._serdes import deserialize_value

    raw = _load_cursor(instance, _AUTOMATION_CURSOR_KEY)
    return deserialize_value(raw) if raw else None


def _save_automation_cursor(instance: Any, cursor: Any) -> None:
    from dagster._serdes import serialize_value

    _save_cursor(instance, serialize_value(cursor), _AUTOMATION_CURSOR_KEY)


def _table_counts(url: str) -> list[str]:
    from movierec_assets.db.connect import connect

    tables = ["movielens.movies", "movielens.ratings", "movielens.rejected_ratings", "features.user_features",
              "features.movie_features", "ml.model_versions", "ml.movie_embeddings", "ml.user_recommendations"]
    lines = []
    with connect(url) as conn:
        for table in tables:
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists is None:
                continue
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed list
            lines.append(f"{table:<32} {count:,} rows")
    return lines
