"""A database that is down is retried by Dagster (the step goes up for retry); a bug is not."""

from __future__ import annotations

import dagster as dg
import pytest

from movierec_assets.assets import features as feature_assets
from movierec_assets.resources import PostgresResource, retry


def _events(result: dg.ExecuteInJobResult, kind: dg.DagsterEventType) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type == kind]


def test_database_down_is_retried_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "WAIT_SECONDS", 0.0)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "postgresql://movierec@127.0.0.1:1/movierec")  # nothing listens
    result = dg.materialize([feature_assets.scaling_stats], resources={"postgres": PostgresResource()},
                            raise_on_error=False)
    assert not result.success
    assert len(_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == retry.MAX_RETRIES
    error = _events(result, dg.DagsterEventType.STEP_FAILURE)[0].event_specific_data.error  # type: ignore[union-attr]
    chain = []
    while error is not None:
        chain.append(error.message)
        error = error.cause
    assert "Exceeded max_retries" in chain[0] and any("127.0.0.1:1" in m for m in chain), chain


def test_a_bug_is_not_retried(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise ZeroDivisionError("a bug, not the database")

    monkeypatch.setattr(retry, "WAIT_SECONDS", 0.0)
    monkeypatch.setattr(feature_assets, "read_feature_tables", broken)
    result = dg.materialize([feature_assets.scaling_stats], resources={"postgres": PostgresResource()},
                            raise_on_error=False)
    assert not result.success
    assert _events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
