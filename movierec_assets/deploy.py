"""Where runs execute, chosen by configuration: in-process (default), multiprocess or celery
(`movierec workers start`, docs/scaling.md "Run it on workers").

Kubernetes is chosen in the instance (deploy/k8s/dagster.yaml), not here: the run launcher is an
instance setting, while the executor belongs to the code location.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from movierec_assets.settings import ENV_EXECUTOR, EXECUTORS, SettingsError


def executor_for(choice: str) -> Any | None:
    """The executor named `choice` (one of `EXECUTORS`), or None for Dagster's default."""
    if choice not in EXECUTORS:
        raise SettingsError(f"{ENV_EXECUTOR}={choice!r}: expected one of {', '.join(EXECUTORS)}")
    if choice == "default":
        return None
    if choice == "multiprocess":
        return dg.multiprocess_executor
    try:
        # dagster-celery and redis are imported only when chosen.
        from movierec_assets.workers.executor import movierec_celery_executor
    except ImportError as exc:
        raise ImportError(f"{ENV_EXECUTOR}=celery needs dagster-celery==0.29.27 and redis installed") from exc
    # dagster-celery's executor, with the broker from MOVIEREC_BROKER_URL (else the local Redis) and
    # a check of the broker and the workers at launch (movierec_assets/workers/executor.py).
    return movierec_celery_executor
