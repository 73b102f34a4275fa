"""Sensors of the movierec code location.

`landing_zone_sensor` turns new or changed day files into partition runs; the automation sensor
runs the declarative automation conditions of every asset (features, model, embeddings react to
new partitions), and both are on by default under `movierec dev`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from movierec_assets.ingest.landing import DayFile, content_hash, landing_dir, scan
from movierec_assets.partitions import DayRange

log = logging.getLogger(__name__)

# Up to this many new files per tick, one run per day; beyond it (a bulk delivery), contiguous
# days are grouped into one single-run range each, so 2,915 files do not become 2,915 runs.
MAX_DAY_REQUESTS = 31
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

# cursor: {"YYYY-MM-DD": [sha256 hex prefix, size, mtime_ns]}; size+mtime spare re-hashing unchanged
# files. 128 bits of the hash detect a replaced file and keep a 3,000-day cursor small.
HASH_CHARS = 32
Fingerprint = list[Any]


def load_cursor(raw: str | None) -> dict[str, Fingerprint]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("landing_zone_sensor: unreadable cursor, starting afresh")
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3} if isinstance(data, dict) else {}


def fingerprint(f: DayFile, previous: Fingerprint | None) -> Fingerprint:
    if previous and previous[1] == f.size and previous[2] == f.mtime_ns:
        return previous
    return [content_hash(f.path)[:HASH_CHARS], f.size, f.mtime_ns]


def plan(files: dict[date, DayFile], previous: dict[str, Fingerprint]) -> tuple[list[tuple[date, str]], dict[str, Fingerprint]]:
    """(days whose content is new or changed, with their delivery key; the new cursor state).

    The key is the content hash and the file's mtime: the same file seen again (a lost cursor) keeps
    its key, so Dagster skips the run it already made; a delivery that goes back to earlier content
    (A, then B, then A again) gets a new key, where the hash alone would make Dagster skip it as
    A's old run and leave B's rows in place."""
    changed: list[tuple[date, str]] = []
    state: dict[str, Fingerprint] = {}
    for day in sorted(files):
        key = day.isoformat()
        try:
            fp = fingerprint(files[day], previous.get(key))
        except OSError as exc:  # vanished or unreadable between listing and hashing: next tick
            log.info("landing_zone_sensor: cannot read %s yet: %s", files[day].path, exc)
            continue
        state[key] = fp
        if previous.get(key, [None])[0] != fp[0]:
            changed.append((day, f"{fp[0]}:{fp[2]}"))
    return changed, state


def _contiguous(changed: list[tuple[date, str]]) -> list[list[tuple[date, str]]]:
    groups: list[list[tuple[date, str]]] = []
    for item in changed:
        if groups and (item[0] - groups[-1][-1][0]).days == 1:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def run_requests(changed: list[tuple[date, str]], max_day_requests: int = MAX_DAY_REQUESTS) -> list[dg.RunRequest]:
    """One run per changed day, or one range run per contiguous block when there are many."""
    if len(changed) <= max_day_requests:
        return [dg.RunRequest(partition_key=d.isoformat(), run_key=f"{d.isoformat()}:{h}") for d, h in changed]
    requests = []
    for group in _contiguous(changed):
        first, last = group[0][0].isoformat(), group[-1][0].isoformat()
        if len(group) == 1:
            requests.append(dg.RunRequest(partition_key=first, run_key=f"{first}:{group[0][1]}"))
            continue
        digest = content_hash_of([h for _, h in group])
        requests.append(dg.RunRequest(run_key=f"{first}..{last}:{digest}",
                                      tags={RANGE_START_TAG: first, RANGE_END_TAG: last}))
    return requests


def content_hash_of(hashes: list[str]) -> str:
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()


def build_landing_zone_sensor(days: DayRange, job: Any, name: str = "landing_zone_sensor",
                              landing: Path | None = None) -> dg.SensorDefinition:
    """The sensor over `days`, watching `landing` (None: `landing_dir()` at each tick)."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches the landing zone for new or changed `YYYY-MM-DD.csv`/`.parquet` day files and requests "
            "the daily_partitioned_ratings run for each (run_key = day + content hash + mtime, so a replaced file "
            f"loads again, even back to earlier content). Partitions: {days.describe()}."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if days.empty:
            return dg.SkipReason(days.describe())
        directory = landing or landing_dir()
        files = scan(directory, days.first, days.last, logger=context.log)
        previous = load_cursor(context.cursor)
        changed, state = plan(files, previous)
        cursor = json.dumps(state, separators=(",", ":"), sort_keys=True)
        if not changed:
            if state != previous:  # touched or removed files; an idle tick stores nothing new
                context.update_cursor(cursor)
            return dg.SkipReason(f"no new or changed day files in {directory} ({len(files)} known)")
        context.log.info(f"{len(changed)} new or changed day file(s): {changed[0][0]} .. {changed[-1][0]}")
        return dg.SensorResult(run_requests=run_requests(changed), cursor=cursor)

    return _sensor


def build_sensors(days: DayRange, daily_job: Any, landing: Path) -> list[dg.SensorDefinition]:
    """The landing sensor over `days`, and the automation sensor over every asset."""
    # Dagster's own automation sensor starts out stopped; this one covers every asset and runs by default.
    automation = dg.AutomationConditionSensorDefinition(
        "movierec_automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Evaluates the assets' automation conditions: after new day partitions land, the features, "
        "model and embeddings re-materialize (once per batch of days, not once per day).",
    )
    return [build_landing_zone_sensor(days, daily_job, landing=landing), automation]
