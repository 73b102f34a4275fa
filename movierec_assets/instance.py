"""Dagster's own instance (runs, event logs, schedules) on the same PostgreSQL server."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from movierec_assets.config import ENV_DATABASE_URL, TRAINING_POOL, paths

# The URL is read from the environment by Dagster itself: it never lands in the file.
DAGSTER_YAML = {
    "storage": {"postgres": {"postgres_url": {"env": ENV_DATABASE_URL}}},
    "telemetry": {"enabled": False},
    # No "Join the Dagster community" modal on a fresh instance (Dagster 1.13's key is `enabled`).
    "nux": {"enabled": False},
    "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
    "run_monitoring": {"enabled": True},
    "concurrency": {
        "runs": {"max_concurrent_runs": 4},
        # `trained_model` is in the "training" pool, the only pool, so one training runs at a time
        # across all runs (config.TRAINING_POOL); the others wait for the slot.
        "pools": {"default_limit": 1},
    },
}


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Write `$MOVIEREC_HOME/dagster/dagster.yaml` (idempotent) and point DAGSTER_HOME at it."""
    dagster_home = home or paths().dagster_home
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    text = yaml.safe_dump(DAGSTER_YAML, sort_keys=False)
    if not target.exists() or target.read_text() != text:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def ensure_pools(instance: dg.DagsterInstance) -> None:
    """Create the instance's pools (at `default_limit`) once, before any run needs them.

    Dagster otherwise creates a pool's row lazily on the first step that uses it, and two runs
    doing so at once on a fresh PostgreSQL instance collide on the pool's unique key (one run then
    fails). Racing bootstraps are harmless here: the loser finds the winner's row.
    """
    storage = instance.event_log_storage
    if TRAINING_POOL in storage.get_concurrency_keys():
        return
    try:
        storage.initialize_concurrency_limit_to_default(TRAINING_POOL)
    except Exception:  # noqa: BLE001 - an IntegrityError from a concurrent bootstrap; checked below
        if TRAINING_POOL not in storage.get_concurrency_keys():
            raise


def bootstrap_instance(home: Path | None = None) -> dg.DagsterInstance:
    """`prepare_dagster_home`, then the instance with its pools created (what every CLI entry uses)."""
    dagster_home = prepare_dagster_home(home)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    ensure_pools(instance)
    return instance


def get_instance():  # type: ignore[no-untyped-def]
    """The persistent Dagster instance (prepares DAGSTER_HOME and the pools first)."""
    bootstrap_instance()
    return dg.DagsterInstance.get()
