"""Assets of the serving group: movie embeddings of the champion, and batch top 10 per user.

Both are eager: `movie_embeddings` runs after `trained_model` updates and does real work only when
the champion changed (else it records why it skipped); `user_recommendations` follows it.
Both carry a `dg.FreshnessPolicy` (SERVING_FRESHNESS): a missed day shows in the UI as a failing
freshness state. Dagster's freshness daemon (run by `dagster dev` / `movierec dev`) evaluates it.
TensorFlow is imported inside the asset bodies (through movierec_assets.serving.offline.batch) only.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from movierec_assets.metadata import rounded
from movierec_assets.resources.database import PostgresResource
from movierec_assets.resources.retry import retry_if_database_drops

OWNERS = ["team:movierec"]
TOP_N = 10

# Days land once a day (replay_schedule, the landing sensor), and each batch of days re-materializes
# both serving assets (a skip for an unchanged champion still counts). 26 h = one day's cadence
# plus 2 h for that run's features, training and embeddings; past 25 h the day is late (WARN).
# The clock is Dagster's: time since the asset's last materialization. How old the data behind the
# served model is, /health reports (`model_data_age_hours`).
FRESH_WITHIN = timedelta(hours=26)
LATE_AFTER = timedelta(hours=25)
SERVING_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=FRESH_WITHIN, warn_window=LATE_AFTER)

EMBEDDINGS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("model_version", "text", description="registry version of the model"),
    dg.TableColumn("movie_id", "int"),
    dg.TableColumn("embedding", "real[]", description="L2-normalised movie-tower output"),
    dg.TableColumn("rank_bias", "real", description="the model's ranking prior for the movie (cosine units)"),
])
RECOMMENDATIONS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("model_version", "text"),
    dg.TableColumn("user_id", "int"),
    dg.TableColumn("rank", "smallint", description="1 = best"),
    dg.TableColumn("movie_id", "int"),
    dg.TableColumn("score", "real", description="cosine of user and movie embeddings plus the movie's ranking prior"),
])


class ServingRunConfig(dg.Config):
    """`force`: recompute even when the stored result already belongs to the current model."""

    force: bool = False


def _progress(context: AssetExecutionContext, what: str, total_hint: str):  # type: ignore[no-untyped-def]
    done = [0]

    def step(k: int) -> None:
        done[0] += k
        context.log.debug(f"{what}: {done[0]} {total_hint}")

    return step


def _result(context: AssetExecutionContext, asset: str, run: Any, schema: dg.TableSchema, done: str,
            numbers: dict[str, Any]) -> dg.MaterializeResult:
    """A serving run's materialization: why it skipped, or `done` (logged) and its `numbers`."""
    meta: dict[str, Any] = {
        "model_version": run.version or None,
        "dagster/table_name": f"ml.{asset}",
        "dagster/column_schema": schema,
    }
    if run.skipped:
        context.log.info(f"{asset} skipped: {run.skipped}")
        return dg.MaterializeResult(metadata={**meta, "skipped": run.skipped})
    context.log.info(done)
    return dg.MaterializeResult(metadata=rounded({**meta, **numbers, "skipped": ""}))


@dg.asset(
    key="movie_embeddings",
    group_name="serving",
    kinds={"tensorflow", "postgres"},
    owners=OWNERS,
    code_version="2",
    deps=[dg.AssetKey("trained_model")],
    automation_condition=dg.AutomationCondition.eager(),
    freshness_policy=SERVING_FRESHNESS,
    description=(
        "The champion model's movie tower run over every movie in features.movie_features (cold-start "
        "movies included), stored in ml.movie_embeddings (+ manifest ml.embedding_sets) and as .npy "
        "next to the model. Skips when the champion already has embeddings."
    ),
)
def movie_embeddings(
    context: AssetExecutionContext, config: ServingRunConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    from movierec_assets.serving.offline.batch import embed_champion  # TensorFlow/Keras: inside the body only

    with retry_if_database_drops(context):
        run = embed_champion(postgres.url(), _progress(context, "embedded", "movies"), force=config.force)
    done = f"embedded {run.movies} movies x {run.dims} for model {run.version} in {run.seconds:.1f}s"
    return _result(context, "movie_embeddings", run, EMBEDDINGS_SCHEMA, done, {
        "dagster/row_count": run.movies,
        "movie_count": run.movies,
        "dimensions": run.dims,
        "seconds": round(run.seconds, 3),
        "npy_dir": run.npy_dir,
    })


@dg.asset(
    key="user_recommendations",
    group_name="serving",
    kinds={"postgres"},
    owners=OWNERS,
    code_version="1",
    deps=[movie_embeddings],
    automation_condition=dg.AutomationCondition.eager(),
    freshness_policy=SERVING_FRESHNESS,
    description=(
        f"Top {TOP_N} unseen movies for every user with features, from the served embeddings, written "
        "to a new table and swapped in for ml.user_recommendations in one transaction."
    ),
)
def user_recommendations(
    context: AssetExecutionContext, config: ServingRunConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    from movierec_assets.serving.offline.batch import recommend_all  # TensorFlow/Keras: inside the body only

    with retry_if_database_drops(context):
        run = recommend_all(postgres.url(), TOP_N, _progress(context, "ranked", "users"), force=config.force)
    return _result(context, "user_recommendations", run, RECOMMENDATIONS_SCHEMA,
                   f"top {TOP_N} for {run.users} users in {run.seconds:.1f}s", {
        "dagster/row_count": run.rows,
        "users": run.users,
        "seconds": round(run.seconds, 3),
        "users_per_second": round(run.users / run.seconds, 1) if run.seconds else None,
    })
