"""landing_zone_sensor with real cursors, and downstream automation after partitions land."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from movierec_assets.jobs import build_daily_ratings_job
from movierec_assets.resources.database import PostgresResource
from movierec_assets.sensors import RANGE_END_TAG, RANGE_START_TAG, build_landing_zone_sensor
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.ingest.days_support import (
    TINY,
    clear_days,
    day_lines,
    ensure_tiny_movies,
    materialize_days,
    tiny_asset,
    write_day,
)


@pytest.fixture
def landing(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = traversable_tmpdir("movierec-landing-")
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(path))
    return path


def _tick(sensor: dg.SensorDefinition, cursor: str | None, instance: dg.DagsterInstance):
    context = dg.build_sensor_context(cursor=cursor, instance=instance)
    result = sensor(context)
    if isinstance(result, dg.SensorResult):
        return result.run_requests or [], result.cursor
    assert isinstance(result, dg.SkipReason)
    return result, context.cursor


def test_each_new_file_once_and_a_replaced_file_again(landing: Path) -> None:
    sensor = build_landing_zone_sensor(TINY, build_daily_ratings_job(tiny_asset().partitions_def))
    instance = dg.DagsterInstance.ephemeral()
    d1, d2 = date(1991, 1, 10), date(1991, 1, 11)
    skip, cursor = _tick(sensor, None, instance)
    assert isinstance(skip, dg.SkipReason) and "no new or changed" in skip.skip_message
    write_day(landing, d1, day_lines(d1, 3))
    write_day(landing, d2, day_lines(d2, 2))
    (landing / "1991-13-40.csv").write_text("x")
    (landing / "../escape.csv").write_text("x")  # outside the zone: never listed
    requests, cursor = _tick(sensor, cursor, instance)
    assert [r.partition_key for r in requests] == ["1991-01-10", "1991-01-11"]
    state = json.loads(cursor)
    assert all(r.run_key == f"{r.partition_key}:{state[r.partition_key][0]}:{state[r.partition_key][2]}" for r in requests)
    skip, cursor = _tick(sensor, cursor, instance)
    assert isinstance(skip, dg.SkipReason)
    old_key = requests[0].run_key
    write_day(landing, d1, day_lines(d1, 4))  # replaced with new content: requested again
    requests, cursor = _tick(sensor, cursor, instance)
    assert [r.partition_key for r in requests] == ["1991-01-10"] and requests[0].run_key != old_key
    stat = os.stat(landing / "1991-01-11.csv")  # touched, same content: not requested
    os.utime(landing / "1991-01-11.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    skip, cursor = _tick(sensor, cursor, instance)
    assert isinstance(skip, dg.SkipReason)
    assert json.loads(cursor)["1991-01-11"][2] == stat.st_mtime_ns + 5_000_000_000


def test_a_bulk_delivery_becomes_range_runs(landing: Path) -> None:
    sensor = build_landing_zone_sensor(TINY, build_daily_ratings_job(tiny_asset().partitions_def))
    instance = dg.DagsterInstance.ephemeral()
    first = date(1991, 2, 1)
    days = [first + timedelta(days=i) for i in range(40)] + [date(1991, 3, 20)]
    for d in days:
        write_day(landing, d, [])
    requests, _ = _tick(sensor, None, instance)
    assert len(requests) == 2
    assert requests[0].tags[RANGE_START_TAG] == "1991-02-01" and requests[0].tags[RANGE_END_TAG] == "1991-03-12"
    assert requests[1].partition_key == "1991-03-20"


def test_the_code_location_sensors_run_by_default() -> None:
    from movierec_assets import defs as load_defs

    defs = load_defs()
    landing_sensor = defs.get_sensor_def("landing_zone_sensor")
    automation = defs.get_sensor_def("movierec_automation_sensor")
    assert landing_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING


DOWNSTREAM_CONDITION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def _requested(result, key: str) -> int:  # type: ignore[no-untyped-def]
    return result.get_num_requested(dg.AssetKey(key))


def test_new_partitions_request_the_downstream_assets_once(pg_url: str, landing: Path) -> None:
    ensure_tiny_movies(pg_url)
    clear_days(pg_url)
    daily = tiny_asset()

    @dg.asset(deps=[daily], automation_condition=DOWNSTREAM_CONDITION)
    def standin_features() -> None:
        """Stands in for the features assets: unpartitioned, downstream of every day."""

    @dg.asset(deps=[daily], automation_condition=dg.AutomationCondition.eager())
    def plain_eager() -> None:
        """eager() alone waits for every day (earlier days are missing): it must not fire."""

    defs = dg.Definitions(assets=[daily, standin_features, plain_eager], resources={"postgres": PostgresResource()})
    instance = dg.DagsterInstance.ephemeral()
    days = [date(1991, 1, 1) + timedelta(days=i) for i in range(12)]
    for d in days:
        write_day(landing, d, day_lines(d, 5))
    dg.materialize([standin_features, plain_eager], instance=instance)  # the state before any day lands
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert _requested(result, "standin_features") == 0

    materialize_days(daily, days[0], instance=instance)  # a new partition lands
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "standin_features") == 1 and _requested(result, "plain_eager") == 0
    dg.materialize([standin_features], instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "standin_features") == 0

    # a backfill of 11 days: one run, one downstream request
    run = materialize_days(daily, days[1], days[-1], instance=instance)
    assert len(run.asset_materializations_for_node("daily_partitioned_ratings")) == 11
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "standin_features") == 1
    dg.materialize([standin_features], instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "standin_features") == 0


def test_a_new_partition_requests_the_real_feature_assets(pg_url: str, landing: Path) -> None:
    """The code location's own downstream assets, with the daily asset over the tiny day range."""
    from movierec_assets import defs

    real_defs = defs()

    ensure_tiny_movies(pg_url)
    clear_days(pg_url)
    daily = tiny_asset()
    others = [a for a in real_defs.assets or [] if dg.AssetKey("daily_partitioned_ratings") not in getattr(a, "keys", ())]
    defs = dg.Definitions(assets=[daily, *others], resources=real_defs.resources)
    graph = defs.resolve_asset_graph()
    downstream = _descendants(graph, dg.AssetKey("daily_partitioned_ratings"))
    if not downstream:
        pytest.skip("no asset depends on daily_partitioned_ratings yet")
    instance = dg.DagsterInstance.ephemeral()
    everything = sorted(k for k in graph.get_all_asset_keys() if k != dg.AssetKey("daily_partitioned_ratings"))
    for key in everything:  # the state before the day lands: everything downstream is up to date
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0
    day = date(1991, 1, 20)
    write_day(landing, day, day_lines(day, 5))
    materialize_days(daily, day, instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    requested = {k for k in graph.get_all_asset_keys() if result.get_num_requested(k)}
    # the whole chain (features, scaling, model, embeddings...) is requested in the same tick
    assert requested == downstream, (requested, downstream)
    assert {dg.AssetKey("user_features"), dg.AssetKey("movie_features")} <= requested


def _descendants(graph, key: dg.AssetKey) -> set[dg.AssetKey]:  # type: ignore[no-untyped-def]
    found: set[dg.AssetKey] = set()
    todo = [key]
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
