"""The daily partitions of the future ratings: one per UTC day, `cutoff_day` + 1 .. `last_day`.

Built from the dataset's split manifest (`movielens.split.split_manifest`), which is a function of
the dataset's content alone: loading or materializing anything never changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from movierec_assets.movielens.split import SplitManifest


@dataclass(frozen=True)
class DayRange:
    """The future days of one dataset, both ends inclusive (empty when `last` < `first`)."""

    first: date
    last: date
    dataset_id: str

    @classmethod
    def of(cls, manifest: SplitManifest) -> DayRange:
        return day_range_for(manifest.cutoff_day, manifest.last_day, manifest.dataset_id)

    @property
    def empty(self) -> bool:
        return self.last < self.first

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def describe(self) -> str:
        if self.empty:
            return f"dataset {self.dataset_id} has no future days (none after {self.first - timedelta(days=1)})"
        n = (self.last - self.first).days + 1
        return f"future days of dataset {self.dataset_id}: {self.first.isoformat()} .. {self.last.isoformat()} " \
               f"({n} days, UTC)"


def daily_partitions_for(days: DayRange) -> dg.DailyPartitionsDefinition:
    """Exactly one partition per day of `days`; end_date is exclusive, so it is last + 1 day."""
    end = max(days.last + timedelta(days=1), days.first)
    return dg.DailyPartitionsDefinition(start_date=days.first.isoformat(), end_date=end.isoformat(), timezone="UTC")


def day_range_for(cutoff_day: date, last_day: date, dataset_id: str) -> DayRange:
    """The future days of a split: cutoff_day + 1 .. last_day."""
    return DayRange(cutoff_day + timedelta(days=1), last_day, dataset_id)
