"""Schedules of the movierec code location."""

from __future__ import annotations

import dagster as dg

from movierec_assets.settings import ENV_REPLAY_CRON


def build_replay_schedule(cron: str, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """`replay_schedule` on `cron` (already validated by `Settings`), UTC."""
    return dg.ScheduleDefinition(
        name="replay_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Replays one future day per tick into the landing zone (cron {cron!r}, UTC; set "
            f"{ENV_REPLAY_CRON}, e.g. '* * * * *' for a demo). landing_zone_sensor then loads it."
        ),
    )
