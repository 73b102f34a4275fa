"""The per-step readings of a run's event log (workers/runs.py) share one loop, `step_events`:
durations, placements and dispatch delays from a hand-made event log, events without a step skipped."""

from __future__ import annotations

from types import SimpleNamespace as N
from typing import Any

import dagster as dg

from movierec_assets.workers import runs

T = dg.DagsterEventType


def _record(ts: float, kind: Any, key: str | None, message: str = "", pid: int | None = None,
            metadata: dict[str, Any] | None = None) -> N:
    event = None if kind is None else N(event_type=kind, step_key=key, pid=pid,
                                        event_specific_data=N(metadata=metadata or {}))
    return N(event_log_entry=N(timestamp=ts, dagster_event=event, message=message))


RECORDS = [
    _record(0.1, T.ENGINE_EVENT, "b", metadata={runs.CELERY_WORKER_KEY: N(value="w1")}),
    _record(0.5, T.ENGINE_EVENT, "a", "Submitting celery task"),
    _record(1.0, T.STEP_START, "a", pid=11),
    _record(2.5, T.STEP_SUCCESS, "a"),
    _record(3.0, None, None),  # not a Dagster event
    _record(3.0, T.STEP_START, None),  # a run-level event
    _record(4.0, T.STEP_START, "b", pid=12),
    _record(4.25, T.STEP_FAILURE, "b"),
]
INSTANCE: Any = N(get_records_for_run=lambda run_id, limit=None, of_type=None: N(records=RECORDS))


def test_each_reading_of_the_step_events() -> None:
    assert [event.step_key for _, event in runs.step_events(INSTANCE, "r")] == ["b", "a", "a", "a", "b", "b"]
    assert runs.step_seconds(INSTANCE, "r") == {"a": 1.5, "b": 0.25}
    assert runs.step_workers(INSTANCE, "r") == {"a": ("", 11), "b": ("w1", 12)}
    assert runs.step_dispatch_seconds(INSTANCE, "r") == {"a": 0.5}
