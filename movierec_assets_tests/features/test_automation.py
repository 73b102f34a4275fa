"""Automation: new daily partitions (earlier days missing, or a backfill of many) re-materialize the
feature assets once; scaling_stats follows. The upstream ingest assets are stand-ins of the same shape."""


import math
from datetime import date, timedelta

import dagster as dg
import polars as pl

from movierec_assets.assets.features import feature_tables, scaling_stats
from movierec_assets.features import read_feature_tables
from movierec_assets.resources import PostgresResource
from movierec_assets_tests.features import handmade as hm
from movierec_assets_tests.features.dbload import append_day, load_movielens

DAYS = dg.DailyPartitionsDefinition(start_date="2020-08-01", end_date="2020-08-21")
NEW_USER = 5


@dg.asset(name="raw_ratings")
def raw_ratings_standin() -> None:
    """Stands in for raw ingestion (history rows are loaded by the test itself)."""


@dg.asset(name="raw_movies")
def raw_movies_standin() -> None:
    """Stands in for raw movies ingestion."""


@dg.asset(name="daily_partitioned_ratings", partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily_standin(context: dg.AssetExecutionContext, postgres: PostgresResource) -> None:
    """Each day adds one rating by user 5, with partition_day set, like the real daily partitions."""
    for key in context.partition_keys:
        day = date.fromisoformat(key)
        rated_at = hm.DAY0 + timedelta(days=(day - hm.DAY0.date()).days, hours=12)
        row = pl.DataFrame(
            {"user_id": [NEW_USER], "movie_id": [2], "rating": [4.0], "rated_at": [rated_at]},
            schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32, "rated_at": pl.Datetime("us", "UTC")},
        )
        append_day(postgres.url(), row, key)


ALL = [raw_ratings_standin, raw_movies_standin, daily_standin, feature_tables, scaling_stats]
RESOURCES = {"postgres": PostgresResource()}


def _requested(result: dg.EvaluateAutomationConditionsResult, key: str) -> int:
    return result.get_num_requested(dg.AssetKey(key))


def _materialize_days(instance: dg.DagsterInstance, first: str, last: str | None = None) -> None:
    if last is None:
        dg.materialize([daily_standin], partition_key=first, instance=instance, resources=RESOURCES)
        return
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    dg.materialize([daily_standin], tags=tags, instance=instance, resources=RESOURCES)


def test_new_days_rematerialize_features_once(pg_url: str) -> None:
    load_movielens(pg_url, hm.ratings(), hm.movies(), hm.tags())
    defs = dg.Definitions(assets=ALL, resources=RESOURCES)
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([raw_ratings_standin, raw_movies_standin, feature_tables, scaling_stats], instance=instance, resources=RESOURCES)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert _requested(result, "user_features") == 0 and _requested(result, "scaling_stats") == 0

    _materialize_days(instance, "2020-08-05")  # days 08-01..08-04 are still missing
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "user_features") == 1 and _requested(result, "movie_features") == 1
    dg.materialize([feature_tables, scaling_stats], instance=instance, resources=RESOURCES)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "user_features") == 0 and _requested(result, "scaling_stats") == 0

    _materialize_days(instance, "2020-08-06", "2020-08-15")  # a backfill of ten days, one run
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "user_features") == 1 and _requested(result, "movie_features") == 1
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "user_features") == 0  # requested once, not once per day or per tick

    dg.materialize([feature_tables], instance=instance, resources=RESOURCES)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(result, "scaling_stats") == 1 and _requested(result, "user_features") == 0
    users, _ = read_feature_tables(pg_url)
    assert users.filter(pl.col("user_id") == NEW_USER)["log_count"].item() == math.log(1 + 11)


def test_real_definitions_wire_the_feature_assets() -> None:
    from movierec_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    for key in ("user_features", "movie_features"):
        node = graph.get(dg.AssetKey(key))
        assert node.parent_keys == {dg.AssetKey(k) for k in ("raw_ratings", "raw_movies", "daily_partitioned_ratings")}
        assert node.group_name == "features" and node.automation_condition is not None
        assert node.kinds == {"postgres", "polars"} and node.owners == ["team:movierec"]
    stats = graph.get(dg.AssetKey("scaling_stats"))
    assert stats.parent_keys == {dg.AssetKey("user_features"), dg.AssetKey("movie_features")}
