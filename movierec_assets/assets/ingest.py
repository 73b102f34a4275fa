"""Assets of the ingest group: raw_movies and raw_ratings (the history).

`daily_partitioned_ratings` depends on the dataset's day range, so `definitions.build_definitions`
builds it (`ingest/daily_asset.py`).
"""

# ==================================================================================================
# History (issue 2): raw_movies and raw_ratings. The work is in movierec_assets/ingest/history.py.
# ==================================================================================================
import dagster as dg
from pydantic import Field

from movierec_assets.ingest.daily_asset import COLUMN_SCHEMA
from movierec_assets.ingest.history import HistoryLoad, load_history, load_movie_tables, resolve_data_dir
from movierec_assets.ingest.load import MAX_REJECT_SHARE, MoviesStats
from movierec_assets.ingest.validate import IngestError
from movierec_assets.metadata import rounded
from movierec_assets.movielens.source import DataFormatError
from movierec_assets.resources import PostgresResource
from movierec_assets.resources.retry import failure, retry_if_database_drops

INGEST_GROUP = "ingest"
INGEST_OWNERS = ["team:movierec"]
INGEST_KINDS = {"postgres", "polars"}
HISTORY_CODE_VERSION = "1"
_HISTORY_ASSET: dict[str, object] = {
    "group_name": INGEST_GROUP,
    "owners": INGEST_OWNERS,
    "kinds": INGEST_KINDS,
    "code_version": HISTORY_CODE_VERSION,
}

# The same table as the daily partitions write; its key is the duplicate rule.
RATINGS_TABLE_SCHEMA = dg.TableSchema(
    columns=list(COLUMN_SCHEMA.columns),
    constraints=dg.TableConstraints(other=["PRIMARY KEY (user_id, movie_id, rated_at)"]),
)
MOVIES_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("movie_id", "int", description="MovieLens movieId (primary key)"),
        dg.TableColumn("title", "text"),
        dg.TableColumn("year", "int", description="from the title; NULL when it has none"),
        dg.TableColumn("genres", "text[]", description="empty for '(no genres listed)'"),
    ]
)


class IngestConfig(dg.Config):
    """Where the MovieLens data comes from, and how much bad data a load tolerates."""

    data_dir: str = Field(
        default="",
        description="MovieLens directory; empty means $MOVIEREC_DATA_DIR, else the synthetic default dataset",
    )
    max_reject_share: float = Field(
        default=MAX_REJECT_SHARE, ge=0.0, le=1.0, description="fail (loading nothing) when more rows than this share are bad"
    )


def movies_metadata(stats: MoviesStats, data_dir: str) -> dict[str, object]:
    return {
        "dagster/row_count": stats.movies,
        "dagster/column_schema": MOVIES_TABLE_SCHEMA,
        "dagster/table_name": "movielens.movies",
        "tags_rows": stats.tags,
        "links_rows": stats.links,
        "source_dir": data_dir,
        "load_seconds": round(stats.seconds, 3),
        "throughput_rows_per_s": round((stats.movies + stats.tags + stats.links) / max(stats.seconds, 1e-9)),
    }


def history_metadata(result: HistoryLoad) -> dict[str, object]:
    load = result.load
    meta: dict[str, object] = {
        "dagster/row_count": result.rows,
        "dagster/column_schema": RATINGS_TABLE_SCHEMA,
        "dagster/table_name": "movielens.ratings",
        "rows_rejected": result.rejected,
        "lines_in_file": result.lines,
        "partition_rows_kept": load.partition_rows_kept,
        "cutoff_day": result.manifest.cutoff_day.isoformat(),
        "dataset_id": result.manifest.dataset_id,
        "source_file": result.source_file,
        "load_rows_per_s": round(load.copy_rows_per_s),
        "end_to_end_rows_per_s": round(result.rows_per_s),
        "parse_seconds": round(result.parse_seconds, 3),
        "validate_seconds": round(result.validate_seconds, 3),
        "copy_seconds": round(load.copy_seconds, 3),
        "index_seconds": round(load.index_seconds, 3),
        "end_to_end_seconds": round(result.seconds, 3),
    }
    if result.min_rated_at is not None and result.max_rated_at is not None:
        meta["min_rated_at"] = dg.MetadataValue.timestamp(result.min_rated_at)
        meta["max_rated_at"] = dg.MetadataValue.timestamp(result.max_rated_at)
    return meta


@dg.asset(
    name="raw_movies",
    **_HISTORY_ASSET,  # type: ignore[arg-type]
    description=(
        "MovieLens movies (title, year parsed from the title, genres as a list) in movielens.movies, "
        "with tags.csv and links.csv in movielens.tags and movielens.links. Each run replaces the three "
        "tables in one transaction (bulk COPY)."
    ),
)
def raw_movies(context: dg.AssetExecutionContext, config: IngestConfig, postgres: PostgresResource) -> dg.MaterializeResult:
    data_dir = resolve_data_dir(config.data_dir)
    try:
        with retry_if_database_drops(context):
            stats = load_movie_tables(postgres.url(), data_dir)
    except (DataFormatError, FileNotFoundError) as exc:
        raise failure(exc) from None  # bad input: named, not retried, nothing written
    context.log.info(f"loaded {stats.movies:,} movies, {stats.tags:,} tags, {stats.links:,} links from {data_dir}")
    return dg.MaterializeResult(metadata=rounded(movies_metadata(stats, str(data_dir))))


@dg.asset(
    name="raw_ratings",
    deps=[raw_movies],
    **_HISTORY_ASSET,  # type: ignore[arg-type]
    description=(
        "The history part of ratings.csv (UTC day <= the split's cutoff_day) in movielens.ratings with "
        "partition_day NULL. Every line is validated; bad lines (unparseable, rating outside 0.5..5.0 or not a "
        "half step, unknown movie, duplicate user/movie/timestamp) go to movielens.rejected_ratings with a "
        "reason. The run fails, loading nothing, when more than max_reject_share of the rows is bad. A run "
        "replaces the history atomically and keeps the rows daily partitions added."
    ),
)
def raw_ratings(context: dg.AssetExecutionContext, config: IngestConfig, postgres: PostgresResource) -> dg.MaterializeResult:
    data_dir = resolve_data_dir(config.data_dir)
    try:
        with retry_if_database_drops(context):
            result = load_history(postgres.url(), data_dir, config.max_reject_share)
    except (IngestError, DataFormatError, FileNotFoundError) as exc:
        raise failure(exc) from None  # bad input: named, not retried, nothing written
    context.log.info(
        f"loaded {result.rows:,} history ratings (cutoff {result.manifest.cutoff_day}), "
        f"rejected {result.rejected:,}, {result.rows_per_s:,.0f} rows/s end to end"
    )
    return dg.MaterializeResult(metadata=rounded(history_metadata(result)))
