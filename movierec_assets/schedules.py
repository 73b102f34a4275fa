"""Schedules of the movierec code location."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from movierec_assets.jobs import replay_job

ENV_REPLAY_CRON = "MOVIEREC_REPLAY_CRON"
DEFAULT_REPLAY_CRON = "0 0 * * *"  # daily; "* * * * *" replays a day a minute for demos


def replay_cron() -> str:
    return os.environ.get(ENV_REPLAY_CRON, "").strip() or DEFAULT_REPLAY_CRON


def build_replay_schedule(cron: str | None = None) -> dg.ScheduleDefinition:
    cron = cron or replay_cron()
    try:
        return dg.ScheduleDefinition(
            name="replay_schedule",
            job=replay_job,
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(
                f"Replays one future day per tick into the landing zone (cron {cron!r}, UTC; set "
                f"{ENV_REPLAY_CRON}, e.g. '* * * * *' for a demo). landing_zone_sensor then loads it."
            ),
        )
    except dg.DagsterInvalidDefinitionError as exc:
        raise ValueError(f"{ENV_REPLAY_CRON}={cron!r} is not a valid cron schedule: {exc}") from None


replay_schedule = build_replay_schedule()


def all_schedules() -> list[Any]:
    return [replay_schedule]
