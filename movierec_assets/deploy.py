"""Where runs execute, chosen by configuration: in-process (default), multiprocess or celery.

Kubernetes is chosen in the instance (deploy/k8s/dagster.yaml), not here: the run launcher is an
instance setting, while the executor belongs to the code location.
"""

from __future__ import annotations

import os
from typing import Any

ENV_EXECUTOR = "MOVIEREC_EXECUTOR"
EXECUTORS = ("default", "multiprocess", "celery")


def executor_from_env() -> Any | None:
    """The executor named by `MOVIEREC_EXECUTOR`, or None for Dagster's default."""
    choice = os.environ.get(ENV_EXECUTOR, "default").strip().lower()
    if choice not in EXECUTORS:
        raise ValueError(f"{ENV_EXECUTOR} must be one of {', '.join(EXECUTORS)}, got {choice!r}")
    if choice == "default":
        return None
    if choice == "multiprocess":
        import dagster as dg

        return dg.multiprocess_executor
    try:
        from dagster_celery import celery_executor
    except ImportError as exc:
        raise ImportError(f"{ENV_EXECUTOR}=celery needs dagster-celery==0.29.27 installed") from exc
    return celery_executor
