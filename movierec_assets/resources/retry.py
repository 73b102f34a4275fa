"""Transient database trouble (a restart, a dropped connection) is retried by Dagster; anything else
(bad input, a bug) fails at once, so a deterministic failure is not repeated with back-off."""

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

    The assets write in one transaction or swap tables atomically, and training resumes from its
    checkpoints, so a retried step starts from a consistent state.
    """
    try:
        yield
    except TRANSIENT as exc:
        context.log.warning(f"database unavailable, the step will be retried: {one_line(exc)}")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=WAIT_SECONDS) from exc
