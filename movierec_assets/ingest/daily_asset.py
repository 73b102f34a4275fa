"""The `daily_partitioned_ratings` asset, built for a given partition set.

`definitions.build_definitions` builds the real one from the dataset's split manifest; tests build
their own for other day ranges. The asset body is thin: `ingest.days.load_days` does the work.
"""


import warnings
from datetime import date
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext

from movierec_assets.ingest.days import DayLoadError, LoadReport, load_days
from movierec_assets.ingest.landing import landing_dir
from movierec_assets.metadata import rounded
from movierec_assets.partitions import DayRange
from movierec_assets.resources.database import PostgresResource
from movierec_assets.resources.retry import TRANSIENT, failure, retry_if_database_drops

ASSET_NAME = "daily_partitioned_ratings"
TABLE = "movielens.ratings"
CODE_VERSION = "1"

COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("user_id", "int", description="MovieLens userId"),
        dg.TableColumn("movie_id", "int", description="MovieLens movieId"),
        dg.TableColumn("rating", "real", description="0.5 .. 5.0 in half steps"),
        dg.TableColumn("rated_at", "timestamptz", description="the rating's timestamp (UTC)"),
        dg.TableColumn("partition_day", "date", description="the day partition that delivered the row"),
    ]
)


def _description(days: DayRange) -> str:
    return (
        "Future MovieLens ratings, one partition per UTC day, loaded from the landing zone "
        "(`YYYY-MM-DD.csv` or `.parquet`) into movielens.ratings with partition_day set. Re-running a day "
        "replaces its rows in one transaction; rows that fail validation (including rows dated outside the "
        f"file's day) go to movielens.rejected_ratings. A range of days loads in one run. Partitions: {days.describe()}."
    )


def _metadata(report: LoadReport, days: list[date], source: str) -> dict[str, object]:
    single = len(days) == 1
    meta: dict[str, object] = {
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "load_seconds": round(report.seconds, 3),
        "read_validate_seconds": round(report.read_seconds, 3),
        "write_seconds": round(report.write_seconds, 3),
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "empty_days": sum(1 for d in report.days if d.rows_loaded == 0),
        "transaction_attempts": report.attempts,
        "landing_dir": dg.MetadataValue.path(source),
        "dagster/table_name": TABLE,
    }
    if report.rejected_reasons:
        meta["rejected_reasons"] = dg.MetadataValue.json(report.rejected_reasons)
    if single:  # for a range, the run's total is not any one partition's row count
        # (the column schema is on the definition; a range writes one event per day, kept small)
        meta["dagster/column_schema"] = COLUMN_SCHEMA
        meta["dagster/row_count"] = report.rows_loaded
        meta["source_file"] = dg.MetadataValue.path(report.days[0].source_file)
    return meta


def build_daily_partitioned_ratings(
    partitions_def: dg.DailyPartitionsDefinition, days: DayRange, landing: Path | None = None
) -> dg.AssetsDefinition:
    """The daily-partitioned ratings asset over `partitions_def` (`days` describes the same range),
    loading from `landing` (None: `landing_dir()` when a run starts)."""
    with warnings.catch_warnings():  # backfill_policy is marked beta; it is what makes ranges one run
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build(partitions_def, days, landing)


def _build(partitions_def: dg.DailyPartitionsDefinition, days: DayRange, landing: Path | None) -> dg.AssetsDefinition:
    @dg.asset(
        name=ASSET_NAME,
        group_name="ingest",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["raw_ratings"],
        kinds={"postgres", "polars"},
        owners=["team:movierec"],
        code_version=CODE_VERSION,
        description=_description(days),
        metadata={"dagster/table_name": TABLE, "dagster/column_schema": COLUMN_SCHEMA,
                  "partition_range": days.describe()},
    )
    def daily_partitioned_ratings(context: AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
        run_days = sorted(date.fromisoformat(k) for k in context.partition_keys)
        source = landing or landing_dir()
        context.log.info(f"loading {len(run_days)} day(s) {run_days[0]} .. {run_days[-1]} from {source}")
        # Transient database trouble is retried (retry_if_database_drops); a missing or unreadable file
        # and a bug are not.
        with retry_if_database_drops(context):
            try:
                report = load_days(postgres.url(), run_days, source)
            except DayLoadError as exc:
                raise failure(exc) from None
            except TRANSIENT:
                raise
            except Exception as exc:  # a bug: fail at once, keeping the cause
                raise failure(exc, bug=True) from exc
        context.log.info(
            f"loaded {report.rows_loaded} rows, rejected {report.rows_rejected}, in {report.seconds:.2f}s"
        )
        return dg.MaterializeResult(metadata=rounded(_metadata(report, run_days, str(source))))

    return daily_partitioned_ratings
