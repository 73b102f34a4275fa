"""Run the code location's jobs in this process or through the configured executor (the Celery
workers), on the persistent instance, and read back where and how long each step ran.

`movierec demo` runs in-process (`execute_in_process`). A Celery run needs what a worker can
rebuild: a reconstructable job (the `movierec_assets` module, loaded again by each worker from its
own environment) and the persistent, PostgreSQL-backed instance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

CODE_LOCATION_MODULE = "movierec_assets"
CODE_LOCATION_ATTR = "defs"  # the `@dg.definitions` function
CELERY_WORKER_KEY = "Celery worker"  # dagster-celery's engine event metadata: the worker's node name


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    seconds: float
    failure: str = ""  # the run failure's message, when it failed
    steps: dict[str, float] = field(default_factory=dict)  # step key -> seconds (start to end)


def reconstructable_job(name: str) -> Any:
    """`name` from the `movierec_assets` module, as a job each worker can rebuild."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    return ReconstructableRepository.for_module(CODE_LOCATION_MODULE, CODE_LOCATION_ATTR).get_reconstructable_job(name)


def run_job(instance: dg.DagsterInstance, job_name: str, *, distributed: bool,
            asset_keys: Sequence[dg.AssetKey] | None = None, partition: str | None = None,
            run_config: dict[str, Any] | None = None) -> RunOutcome:
    """Run `job_name` (the subset `asset_keys`, one `partition`); `distributed`: through the job's
    executor (MOVIEREC_EXECUTOR) from a reconstructable job, else `execute_in_process`."""
    tags = {"dagster/partition": partition} if partition else {}
    run_config = run_config or {}
    started = time.perf_counter()
    if distributed:
        from dagster._core.execution.api import execute_job

        with execute_job(reconstructable_job(job_name), instance, run_config=run_config, tags=tags,
                         asset_selection=list(asset_keys) if asset_keys else None, raise_on_error=False) as result:
            run_id, success = result.run_id, result.success
    else:
        from movierec_assets.definitions import current_definitions

        job = current_definitions().resolve_job_def(job_name)
        result = job.execute_in_process(instance=instance, run_config=run_config, partition_key=partition,
                                        asset_selection=list(asset_keys) if asset_keys else None,
                                        raise_on_error=False, run_id=str(uuid.uuid4()))
        run_id, success = result.run_id, result.success
    seconds = time.perf_counter() - started
    return RunOutcome(run_id, success, seconds, "" if success else run_failure(instance, run_id),
                      step_seconds(instance, run_id))


def run_failure(instance: dg.DagsterInstance, run_id: str) -> str:
    """The message of the run's RUN_FAILURE event, with its error, if any."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records:
        entry = record.event_log_entry
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        return f"{entry.message or ''}\n{error.to_string() if error else ''}".strip()
    return ""


def step_events(instance: dg.DagsterInstance, run_id: str) -> Iterator[tuple[Any, Any]]:
    """(event log entry, its Dagster event) for every event of the run that belongs to a step."""
    for record in instance.get_records_for_run(run_id, limit=100_000).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is not None and event.step_key is not None:
            yield entry, event


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds from each step's STEP_START to its STEP_SUCCESS or STEP_FAILURE."""
    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry, event in step_events(instance, run_id):
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            out[event.step_key] = round(entry.timestamp - started.get(event.step_key, entry.timestamp), 3)
    return out


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[str, int]]:
    """Step key -> (Celery worker node name, PID of the process that ran the step), from the event
    log: dagster-celery's "Executing steps ... in celery worker" engine event names the worker, and
    the step's own STEP_START event carries the PID of the process it ran in."""
    names: dict[str, str] = {}
    pids: dict[str, int] = {}
    for _, event in step_events(instance, run_id):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            metadata = getattr(event.event_specific_data, "metadata", None) or {}
            if CELERY_WORKER_KEY in metadata:
                names[event.step_key] = str(metadata[CELERY_WORKER_KEY].value)
        elif event.event_type == dg.DagsterEventType.STEP_START and event.pid is not None:
            pids[event.step_key] = int(event.pid)
    return {key: (names.get(key, ""), pids.get(key, 0)) for key in set(names) | set(pids)}


def step_pid_when_started(instance: dg.DagsterInstance, run_id: str, step_key: str) -> int | None:
    """The PID of the process running `step_key` once it has started (None before)."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.step_key == step_key and event.pid is not None:
            return int(event.pid)
    return None


def step_dispatch_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Per step, seconds from dagster-celery's "Submitting celery task" event to the step's
    STEP_START on a worker: the broker round trip, the queue wait and the worker's job rebuild."""
    submitted: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry, event in step_events(instance, run_id):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT and (entry.message or "").startswith("Submitting"):
            submitted[event.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START and event.step_key in submitted:
            out[event.step_key] = round(entry.timestamp - submitted[event.step_key], 3)
    return out
