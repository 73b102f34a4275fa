"""Assets of the features group: user_features, movie_features (one read, two tables) and scaling_stats."""


import time
from collections.abc import Iterator

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from movierec_assets.features.compute import FEATURE_SET_VERSION
from movierec_assets.features.scaling import compute_scaling_stats
from movierec_assets.features.store import (
    compute_from_database,
    read_feature_tables,
    write_feature_tables,
    write_scaling_stats,
)
from movierec_assets.metadata import rounded
from movierec_assets.resources import PostgresResource
from movierec_assets.resources.retry import retry_if_database_drops

GROUP = "features"
OWNERS = ["team:movierec"]
KINDS = {"postgres", "polars"}
UPSTREAM = [dg.AssetKey("raw_ratings"), dg.AssetKey("raw_movies"), dg.AssetKey("daily_partitioned_ratings")]
# Fires when new daily partitions land even while earlier days are still missing (plain eager()
# waits for every partition); eager() also waits for in-progress upstream runs, so a backfill of
# many days leads to one re-materialization, not one per day.
ON_NEW_DATA = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())

_DTYPE_NAMES = {pl.Int32: "integer", pl.Int64: "bigint", pl.Float64: "double precision", pl.String: "text"}


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, _DTYPE_NAMES.get(dtype, str(dtype))) for name, dtype in frame.schema.items()]
    )


def distribution_markdown(frame: pl.DataFrame, id_column: str) -> str:
    """One line per feature: mean, std, min, max (a glance at the distributions)."""
    columns = [c for c in frame.columns if c != id_column]
    if frame.is_empty():
        return "_no rows_"
    stats = frame.select(
        *(pl.col(c).mean().alias(f"{c}:mean") for c in columns),
        *(pl.col(c).std(ddof=0).alias(f"{c}:std") for c in columns),
        *(pl.col(c).min().alias(f"{c}:min") for c in columns),
        *(pl.col(c).max().alias(f"{c}:max") for c in columns),
    ).row(0, named=True)
    lines = [f"{frame.height:,} rows", "", "| feature | mean | std | min | max |", "|---|---:|---:|---:|---:|"]
    for c in columns:
        values = " | ".join(f"{stats[f'{c}:{s}']:.4g}" for s in ("mean", "std", "min", "max"))
        lines.append(f"| {c} | {values} |")
    return "\n".join(lines)


def table_metadata(frame: pl.DataFrame, table: str, id_column: str) -> dict[str, object]:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": column_schema(frame),
        "dagster/table_name": f"features.{table}",
        "feature_set_version": FEATURE_SET_VERSION,
        "distributions": dg.MetadataValue.md(distribution_markdown(frame, id_column)),
    }


_FEATURE_SPECS = [
    dg.AssetSpec(
        key,
        description=description,
        deps=UPSTREAM,
        group_name=GROUP,
        owners=OWNERS,
        kinds=KINDS,
        code_version=FEATURE_SET_VERSION,
        automation_condition=ON_NEW_DATA,
    )
    for key, description in (
        (
            "user_features",
            "features.user_features: one row per user with a rating. Log count, mean and std of "
            "ratings, days since the last rating (relative to the latest rating), per genre the mean "
            "rating shrunk toward the user's mean and the share of ratings, and the mean release year.",
        ),
        (
            "movie_features",
            "features.movie_features: one row per movie of movielens.movies, rated or not. Year "
            "(median-filled, with year_missing), genre multi-hot, log count, Bayesian-shrunk mean, std, "
            "log ratings in the last 90 days, log tag count.",
        ),
    )
]


@dg.multi_asset(specs=_FEATURE_SPECS, can_subset=False)
def feature_tables(context: AssetExecutionContext, postgres: PostgresResource) -> Iterator[dg.MaterializeResult]:
    """Both feature tables from one read of movielens.ratings (history plus every loaded day)."""
    with retry_if_database_drops(context):
        url = postgres.url()
        frames = compute_from_database(url)
        started = time.perf_counter()
        write_feature_tables(url, frames.users, frames.movies)
    seconds = {**frames.timings.seconds, "write": time.perf_counter() - started}
    timing = {f"{phase}_seconds": round(value, 3) for phase, value in seconds.items()}
    context.log.info(f"features: {frames.users.height:,} users, {frames.movies.height:,} movies; {timing}")
    yield dg.MaterializeResult(
        asset_key="user_features", metadata=rounded({**table_metadata(frames.users, "user_features", "user_id"), **timing})
    )
    yield dg.MaterializeResult(
        asset_key="movie_features", metadata=rounded({**table_metadata(frames.movies, "movie_features", "movie_id"), **timing})
    )


@dg.asset(
    deps=["user_features", "movie_features"],
    group_name=GROUP,
    owners=OWNERS,
    kinds=KINDS,
    code_version=FEATURE_SET_VERSION,
    automation_condition=dg.AutomationCondition.eager(),
    description="features.scaling_stats: mean and std (ddof=0) of every numeric feature of the stored "
    "feature tables, tagged with the feature-set version; `features.scale` applies them for "
    "training and inference alike.",
)
def scaling_stats(context: AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    with retry_if_database_drops(context):
        url = postgres.url()
        started = time.perf_counter()
        users, movies = read_feature_tables(url)
        read_s = time.perf_counter() - started
        stats = compute_scaling_stats(users, movies)
        started = time.perf_counter()
        write_scaling_stats(url, stats)
    write_s = time.perf_counter() - started
    shown = stats.select("table_name", "column_name", pl.col("mean").round(4), pl.col("std").round(4))
    lines = ["| table | column | mean | std |", "|---|---|---:|---:|"]
    lines += [f"| {t} | {c} | {m:.4g} | {s:.4g} |" for t, c, m, s in shown.iter_rows()]
    return dg.MaterializeResult(
        metadata=rounded({
            "dagster/row_count": stats.height,
            "dagster/column_schema": column_schema(stats),
            "dagster/table_name": "features.scaling_stats",
            "feature_set_version": FEATURE_SET_VERSION,
            "stats": dg.MetadataValue.md("\n".join(lines)),
            "read_seconds": round(read_s, 3),
            "write_seconds": round(write_s, 3),
        })
    )
