"""The daily partitions of the future ratings: one per UTC day, `cutoff_day` + 1 .. `last_day`.

Built from the active split manifest file when definitions load, never by scanning the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

log = logging.getLogger(__name__)

# Used only before any dataset is prepared (the CLI prepares one before `dev`/`demo`), so the
# definitions still load with a small, valid, clearly labelled partition set.
PLACEHOLDER_FIRST = date(2000, 1, 1)
PLACEHOLDER_LAST = date(2000, 1, 7)


@dataclass(frozen=True)
class DayRange:
    """The future days of one dataset, both ends inclusive."""

    first: date
    last: date
    dataset_id: str | None  # None: placeholder, no manifest yet
    note: str = ""

    @property
    def from_manifest(self) -> bool:
        return self.dataset_id is not None

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def describe(self) -> str:
        span = f"{self.first.isoformat()} .. {self.last.isoformat()} ({(self.last - self.first).days + 1} days, UTC)"
        if self.from_manifest:
            return f"future days of dataset {self.dataset_id}: {span}"
        return f"PLACEHOLDER partitions {span}: {self.note or 'no split manifest yet'}"


def day_range_for(cutoff_day: date, last_day: date, dataset_id: str) -> DayRange:
    """The future days of a split: cutoff_day + 1 .. last_day (a placeholder when there are none)."""
    first = cutoff_day + timedelta(days=1)
    if last_day < first:
        return placeholder(f"dataset {dataset_id} has no future days (cutoff {cutoff_day}, last {last_day})")
    return DayRange(first, last_day, dataset_id)


def placeholder(note: str) -> DayRange:
    return DayRange(PLACEHOLDER_FIRST, PLACEHOLDER_LAST, None, note)


def active_day_range() -> DayRange:
    """The day range of the active split manifest (`$MOVIEREC_HOME/split_manifest.json`)."""
    from movierec_assets.movielens.split import read_active_manifest

    try:
        manifest = read_active_manifest()
    except Exception as exc:  # a broken manifest must not break the whole code location
        log.warning("cannot read the split manifest, using placeholder partitions: %s", exc)
        return placeholder(f"the split manifest could not be read: {exc}")
    if manifest is None:
        return placeholder("no split manifest yet; run `movierec dev` or `movierec demo` to prepare a dataset")
    return day_range_for(manifest.cutoff_day, manifest.last_day, manifest.dataset_id)


def daily_partitions_for(days: DayRange) -> dg.DailyPartitionsDefinition:
    """Exactly one partition per day of `days`; end_date is exclusive, so it is last + 1 day."""
    return dg.DailyPartitionsDefinition(
        start_date=days.first.isoformat(),
        end_date=(days.last + timedelta(days=1)).isoformat(),
        timezone="UTC",
    )


def partition_day(key: str) -> date:
    """The date of a partition key (`YYYY-MM-DD`)."""
    return date.fromisoformat(key)


ACTIVE_DAYS: DayRange = active_day_range()
daily_partitions: dg.DailyPartitionsDefinition = daily_partitions_for(ACTIVE_DAYS)
