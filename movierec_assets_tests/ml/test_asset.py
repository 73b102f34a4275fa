"""trained_model on ml-latest-small through real Dagster and the real PostgreSQL; automation."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from movierec_assets.assets.features import feature_tables, scaling_stats
from movierec_assets.assets.ml import champion_gate, trained_model
from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ml import plots, registry
from movierec_assets.resources import PostgresResource

TINY = {"epochs": 2, "user_layers": [16], "movie_layers": [16], "embedding": 8, "id_buckets": 1000,
        "batch_size": 2048, "rank_users_cap": 200}


def _load_ml_small(url: str, directory: Path) -> int:
    """Own state: the ratings/movies/tags tables hold exactly ml-latest-small, as history."""
    from movierec_assets.movielens.source import read_movies, read_ratings, read_tags

    ratings = read_ratings(directory).select("user_id", "movie_id", "rating", "rated_at")
    tags = read_tags(directory)
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.movies, movielens.tags")
        bulk.ingest(conn, "movielens", "movies", read_movies(directory))
        bulk.ingest(conn, "movielens", "ratings", ratings)
        if tags is not None:
            bulk.ingest(conn, "movielens", "tags", tags.select("user_id", "movie_id", "tag", "tagged_at"))
        conn.commit()
    with connect(url) as conn:
        conn.execute("DELETE FROM ml.model_versions")
        conn.commit()
    return ratings.height


def _train(instance: dg.DagsterInstance, config: dict) -> dg.ExecuteInJobResult:
    return dg.materialize(
        [feature_tables, scaling_stats, trained_model, champion_gate],
        instance=instance,
        resources={"postgres": PostgresResource()},
        run_config={"ops": {"trained_model": {"config": config}}},
        raise_on_error=False,
    )


def test_materialize_records_version_and_gate_rejects_worse_model(pg_url: str, ml_small: Path) -> None:
    n = _load_ml_small(pg_url, ml_small)
    instance = dg.DagsterInstance.ephemeral()
    first = _train(instance, {**TINY, "epochs": 3, "learning_rate": 5e-3})
    assert first.success
    meta = first.asset_materializations_for_node("trained_model")[0].metadata
    version = meta["model_version"].value
    row = registry.get_version(pg_url, version)
    assert row is not None and row.status == "champion"  # first model: promoted
    assert row.metrics["holdout_events"] + row.metrics["train_events"] == n
    for key in ("holdout_rmse", "two_tower_recall_at_10", "bias_rmse", "popularity_ndcg_at_10"):
        assert row.metrics[key] is not None, key
    assert row.metrics["holdout_rmse"] < row.metrics["global_mean_rmse"]
    assert "data:image/png;base64," in meta["training_curve"].value
    # The committed continual-training replay's picture (docs/img/continual.png), or the command
    # that makes it.
    assert ("data:image/png;base64," in meta["continual_training"].value) == plots.CONTINUAL_PNG.is_file()
    assert registry.load_model(row.path).predict is not None

    # A deliberately worse model (no learning at all) is recorded but rejected.
    second = _train(instance, {**TINY, "epochs": 1, "learning_rate": 1e-9, "retrieval_weight": 0.0,
                               "retrain_policy": "full"})
    checks = second.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [False]
    worse = registry.get_version(pg_url, second.asset_materializations_for_node("trained_model")[0]
                                 .metadata["model_version"].value)
    assert worse is not None and worse.status == "rejected" and "worse than champion" in (worse.reason or "")
    assert worse.metrics["champion_version"] == version
    assert registry.current_champion(pg_url).version == version


def test_retrain_automation_fires_once_after_many_feature_updates() -> None:
    """A backfill that refreshes the features many times leads to one trained_model request."""

    @dg.asset(name="user_features")
    def users() -> None: ...

    @dg.asset(name="movie_features")
    def movies() -> None: ...

    @dg.asset(name="scaling_stats")
    def stats() -> None: ...

    defs = dg.Definitions(assets=[users, movies, stats, trained_model], resources={"postgres": PostgresResource()})
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey("trained_model")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.get_num_requested(key) == 0  # nothing upstream yet
    dg.materialize([users, movies, stats], instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(key) == 1
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(key) == 0  # handled: no repeat
    for _ in range(5):  # five refreshes during a backfill, before the next tick
        dg.materialize([users, movies, stats], instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.get_num_requested(key) == 1
