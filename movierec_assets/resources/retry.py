"""Transient database trouble (a restart, a dropped connection) is retried by Dagster; anything else
(bad input, a bug) fails at once, so a deterministic failure is not repeated with back-off.

`retry_if_database_drops` is the one retry mechanism of the asset bodies (the in-transaction retry
of deadlocks in `ingest/days.py` is a different thing: the same transaction, replayed at once).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import adbc_driver_manager
import dagster as dg
import psycopg

from movierec_assets.db.connect import DatabaseUnavailable, one_line

TRANSIENT: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    psycopg.OperationalError,
    adbc_driver_manager.OperationalError,
)
MAX_RETRIES = 3
WAIT_SECONDS = 5.0


@contextmanager
def retry_if_database_drops(context: Any) -> Iterator[None]:
    """Turn a transient database error inside an asset body into a Dagster retry of the step.

    The retry's cause is one redacted line (a `dg.Failure` with no cause chain, so no driver
    traceback or DSN reaches the run's events). The assets write in one transaction or swap tables
    atomically, and training resumes from its checkpoints, so a retried step starts consistent.
    """
    try:
        yield
    except TRANSIENT as exc:
        message = one_line(exc)
        context.log.warning(f"database unavailable, the step will be retried: {message}")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=WAIT_SECONDS) from dg.Failure(
            description=message, allow_retries=True)


def failure(exc: BaseException, bug: bool = False) -> dg.Failure:
    """`exc` as a final Dagster failure (bad input or a bug: no retry) with one redacted line;
    a bug's line starts with its exception type."""
    line = f"{type(exc).__name__}: {one_line(exc)}" if bug else one_line(exc)
    return dg.Failure(description=line, allow_retries=False)
