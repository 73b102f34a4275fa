"""Bad input on days, through the real landing sensor and partition runs on the real server: a day
delivered twice, a day landing after a later one (out of order), and an empty (header-only) day
each change nothing or update correctly, never twice: movielens.ratings, movielens.user_rated and
the features hold exactly the expected rows.

The sensor daemon's run-key dedup needs a code location (it matches runs to a `RemoteSensor`);
here the sensor's run key is checked against the run already recorded under it, which is what the
daemon looks up, and the run is then launched anyway to show that even a second run adds nothing.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from movierec_assets.assets.features import feature_tables
from movierec_assets.db.connect import connect
from movierec_assets.jobs import build_daily_ratings_job
from movierec_assets.resources.database import PostgresResource
from movierec_assets.sensors import build_landing_zone_sensor
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.ingest.days_support import (
    TINY,
    TINY_MOVIES,
    day_counts,
    ensure_tiny_movies,
    rejects,
    tiny_asset,
    ts,
    write_day,
)
from movierec_assets_tests.ingest.test_user_rated import assert_consistent, clear

EARLY, LATE, EMPTY = date(1991, 3, 15), date(1991, 3, 16), date(1991, 3, 17)
U1, U2 = 880001, 880002  # ids no other test uses
M1, M2, _ = TINY_MOVIES
LATE_LINES = [f"{U1},{M1},4.0,{ts(LATE, 36000)}", f"{U2},{M2},3.0,{ts(LATE, 36060)}"]
EARLY_LINES = [f"{U1},{M2},5.0,{ts(EARLY, 36000)}"]


@pytest.fixture
def landing(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = traversable_tmpdir("movierec-landing-")
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(path))
    return path


class Zone:
    """The landing sensor over the tiny days and the runs it requests, on one instance."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.asset = tiny_asset()
        self.sensor = build_landing_zone_sensor(TINY, build_daily_ratings_job(self.asset.partitions_def))
        self.instance, self.cursor = instance, None

    def tick(self, cursor: str | None = "kept") -> list[dg.RunRequest]:
        context = dg.build_sensor_context(cursor=self.cursor if cursor == "kept" else cursor, instance=self.instance)
        result = self.sensor(context)
        if isinstance(result, dg.SkipReason):
            self.cursor = context.cursor or self.cursor
            return []
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def run(self, request: dg.RunRequest) -> dict[str, object]:
        """The run the daemon would launch for `request` (tagged with its run key); its metadata."""
        tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: self.sensor.name}
        result = dg.materialize([self.asset], partition_key=request.partition_key, tags=tags,
                                instance=self.instance, resources={"postgres": PostgresResource()})
        [event] = result.asset_materializations_for_node("daily_partitioned_ratings")
        return {k: v.value for k, v in event.metadata.items()}

    def runs_with_key(self, run_key: str) -> int:
        return len(self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key})))


def _ours(url: str) -> list[tuple[int, int, float, date]]:
    with connect(url) as conn:
        return conn.execute(
            "SELECT user_id, movie_id, rating, partition_day FROM movielens.ratings WHERE user_id = ANY(%s) "
            "ORDER BY user_id, rated_at", ([U1, U2],)).fetchall()


def _user_features(url: str) -> dict[int, tuple[float, float]]:
    with connect(url) as conn:
        rows = conn.execute("SELECT user_id, log_count, mean_rating FROM features.user_features "
                            "WHERE user_id = ANY(%s)", ([U1, U2],)).fetchall()
    return {u: (round(c, 6), round(m, 6)) for u, c, m in rows}


def test_twice_out_of_order_and_empty_days_land_exactly_once(pg_url: str, landing: Path) -> None:
    ensure_tiny_movies(pg_url)
    clear(pg_url)  # the tiny days' rows gone, movielens.user_rated rebuilt
    zone = Zone(dg.DagsterInstance.ephemeral())

    write_day(landing, LATE, LATE_LINES)  # the later day first
    [first] = zone.tick()
    assert first.partition_key == LATE.isoformat() and zone.run(first)["rows_loaded"] == 2

    # A sensor that lost its cursor asks again under the same run key, which already names a run
    # (the daemon skips it); a second run anyway replaces the day, it does not add to it.
    [again] = zone.tick(cursor=None)
    assert again.run_key == first.run_key and zone.runs_with_key(first.run_key) == 1
    assert zone.run(again)["rows_loaded"] == 2 and day_counts(pg_url, [LATE]) == {LATE: 2}
    # The same day delivered again (identical content, a new mtime): no new request.
    write_day(landing, LATE, LATE_LINES)
    assert zone.tick() == [] and day_counts(pg_url, [LATE]) == {LATE: 2}

    # Out of order: the earlier day lands after the later one; only it is requested.
    write_day(landing, EARLY, EARLY_LINES)
    [early] = zone.tick()
    assert early.partition_key == EARLY.isoformat() and zone.run(early)["rows_loaded"] == 1
    assert _ours(pg_url) == [(U1, M2, 5.0, EARLY), (U1, M1, 4.0, LATE), (U2, M2, 3.0, LATE)]
    rated = assert_consistent(pg_url)  # newest first by rating time, not by load order
    assert rated[U1] == ([M1, M2], [4.0, 5.0]) and rated[U2] == ([M2], [3.0])

    # An empty day (header only) loads nothing and rejects nothing.
    write_day(landing, EMPTY, [])
    [empty] = zone.tick()
    meta = zone.run(empty)
    assert (meta["rows_loaded"], meta["rows_rejected"], meta["empty_days"]) == (0, 0, 1)
    assert rejects(pg_url, EMPTY) == [] and day_counts(pg_url, [EARLY, LATE, EMPTY]) == {EARLY: 1, LATE: 2}

    # A later delivery that empties the earlier day takes its rows back out, once.
    write_day(landing, EARLY, [])
    [emptied] = zone.tick()
    assert emptied.partition_key == EARLY.isoformat() and emptied.run_key != early.run_key
    assert zone.run(emptied)["rows_loaded"] == 0
    assert _ours(pg_url) == [(U1, M1, 4.0, LATE), (U2, M2, 3.0, LATE)]
    rated = assert_consistent(pg_url)
    assert rated[U1] == ([M1], [4.0])
    write_day(landing, EARLY, EARLY_LINES)  # and its first content again: back exactly once
    [back] = zone.tick()  # a new run key: under the first one, the daemon would skip it as done
    assert back.run_key != early.run_key and zone.runs_with_key(back.run_key) == 0
    zone.run(back)
    assert _ours(pg_url) == [(U1, M2, 5.0, EARLY), (U1, M1, 4.0, LATE), (U2, M2, 3.0, LATE)]

    # The features over these days: two ratings for U1 (mean 4.5), one for U2.
    dg.materialize([feature_tables], resources={"postgres": PostgresResource()}, instance=zone.instance)
    assert _user_features(pg_url) == {U1: (round(math.log1p(2), 6), 4.5), U2: (round(math.log1p(1), 6), 3.0)}
    clear(pg_url)
