"""Where runs execute, chosen by configuration: in-process (default), multiprocess or celery.

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
        # Optional extra (`pip install .[deploy]`), imported only when chosen.
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ImportError(f"{ENV_EXECUTOR}=celery needs dagster-celery==0.29.27 installed") from exc
    return celery_executor
