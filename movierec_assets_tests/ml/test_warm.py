"""Retraining policies on the real assets (real PostgreSQL, real Dagster, a small synthetic world):
warm updates record their lineage, never twice, fall back to full on another architecture, and a
worse warm model is rejected while the champion keeps serving."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl

from movierec_assets.assets.features import feature_tables, scaling_stats
from movierec_assets.assets.ml import champion_gate, trained_model
from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ml import registry
from movierec_assets.resources import PostgresResource

# The same tiny training as the fault suite's champion (seconds per run).
CHAMPION_CONFIG = {"epochs": 1, "user_layers": [16], "movie_layers": [16], "embedding": 8, "id_buckets": 1000,
                   "batch_size": 2048, "rank_users_cap": 100}
NEW_DAY = datetime(2000, 1, 1, tzinfo=UTC)  # after every rating of the small world (8e14..9e14 us)


def _load_small_world(url: str, n_users: int = 300, n_movies: int = 200, per_user: int = 30) -> None:
    """Own state: a small synthetic MovieLens world as the whole history, an empty registry."""
    rng = np.random.default_rng(3)
    taste_u, taste_m = rng.normal(size=(n_users, 3)), rng.normal(size=(n_movies, 3))
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    movies = np.concatenate([rng.choice(n_movies, per_user, replace=False) for _ in range(n_users)])
    score = (taste_u[users - 1] * taste_m[movies]).sum(1)
    ratings = pl.DataFrame({
        "user_id": users.astype(np.int32), "movie_id": (movies + 1).astype(np.int32),
        "rating": (np.clip(np.round(2 * (3 + score)) / 2, 0.5, 5.0)).astype(np.float32),
        "rated_at": pl.Series(rng.integers(8e14, 9e14, len(users))).cast(pl.Datetime("us", "UTC")),
    })
    genres = ["Action", "Comedy", "Drama", "Horror"]
    catalog = pl.DataFrame({
        "movie_id": np.arange(1, n_movies + 1, dtype=np.int32),
        "title": [f"Movie {i} ({1980 + i % 40})" for i in range(1, n_movies + 1)],
        "year": pl.Series([1980 + i % 40 for i in range(1, n_movies + 1)], dtype=pl.Int32),
        "genres": [[genres[i % 4]] for i in range(n_movies)],
    })
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.movies, movielens.tags")
        bulk.ingest(conn, "movielens", "movies", catalog)
        bulk.ingest(conn, "movielens", "ratings", ratings)
        conn.commit()
    with connect(url) as conn:
        conn.execute("DELETE FROM ml.model_versions")


def _add_new_ratings(url: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({
        "user_id": rng.integers(1, 301, n).astype(np.int32), "movie_id": rng.integers(1, 201, n).astype(np.int32),
        "rating": rng.choice(np.arange(1, 11) / 2, n).astype(np.float32),
        "rated_at": pl.Series([NEW_DAY.timestamp() * 1e6 + seed * 1e9 + i * 1e6 for i in range(n)])
        .cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
    }).unique(["user_id", "movie_id", "rated_at"])
    with adbc_connect(url) as conn:
        bulk.ingest(conn, "movielens", "ratings", frame)
        conn.commit()


def _run(instance: dg.DagsterInstance, config: dict) -> tuple[dict, bool]:
    result = dg.materialize([feature_tables, scaling_stats, trained_model, champion_gate], instance=instance,
                            resources={"postgres": PostgresResource()},
                            run_config={"ops": {"trained_model": {"config": config}}}, raise_on_error=False)
    meta = {k: v.value for k, v in result.asset_materializations_for_node("trained_model")[0].metadata.items()}
    [check] = result.get_asset_check_evaluations()
    return meta, check.passed


def test_warm_lineage_never_twice_fallback_and_rejection(pg_url: str) -> None:
    _load_small_world(pg_url)
    instance = dg.DagsterInstance.ephemeral()
    first, passed = _run(instance, {**CHAMPION_CONFIG, "epochs": 2, "retrain_policy": "warm"})
    assert passed and first["policy"] == "full" and first["parent_version"] == "none"
    assert first["policy_reason"] == "warm falls back to full: no champion to warm-start from"
    champion = registry.current_champion(pg_url)
    assert champion is not None and champion.policy == "full" and champion.trained_on["rows"] == 9000

    # Never twice: no rating after the champion's data_end, so warm trains nothing.
    same, passed = _run(instance, {**CHAMPION_CONFIG, "retrain_policy": "warm"})
    assert passed and same["policy"] == "none" and same["trained"] is False
    assert "no new ratings since champion" in same["policy_reason"]
    assert len(registry.list_versions(pg_url)) == 1

    _add_new_ratings(pg_url, 200, seed=1)
    warm, passed = _run(instance, {**CHAMPION_CONFIG, "retrain_policy": "warm", "warm_history_sample": 1e6})
    version = registry.get_version(pg_url, warm["model_version"])
    assert version is not None and version.policy == "warm" and version.parent_version == champion.version
    assert warm["parent_version"] == champion.version
    seen = version.trained_on
    assert (seen["new_rows"], seen["history_sample"], seen["holdout_rows"]) == (200, 9000, 20)
    assert datetime.fromisoformat(seen["holdout_start"]) > champion.data_end  # neither model trained on it
    assert version.metrics["champion_version"] == champion.version
    assert [v.version for v in registry.lineage(pg_url, version.version)] == [version.version, champion.version]
    # A fine-tune on a few days keeps its parent's ranking prior (refitted by the next full training).
    assert warm["ranking_prior"] == {"kept": True, "from": "parent"}
    assert np.array_equal(*(registry.load_model(v.path).rank_weights.numpy() for v in (version, champion)))

    # A warm update with a destructive learning rate is judged like any other: rejected.
    _add_new_ratings(pg_url, 200, seed=2)
    before = registry.current_champion(pg_url)
    bad, passed = _run(instance, {**CHAMPION_CONFIG, "retrain_policy": "warm", "warm_learning_rate": 50.0,
                                  "warm_epochs": 3})
    rejected = registry.get_version(pg_url, bad["model_version"])
    assert bad["policy"] == "warm" and not passed
    assert rejected is not None and rejected.status == "rejected" and "worse than champion" in (rejected.reason or "")
    assert registry.current_champion(pg_url).version == before.version  # type: ignore[union-attr]

    # Another architecture: warm falls back to full, and the registry says why.
    other, _ = _run(instance, {**CHAMPION_CONFIG, "retrain_policy": "warm", "embedding": 4})
    full = registry.get_version(pg_url, other["model_version"])
    assert full is not None and full.policy == "full" and full.parent_version is None
    assert full.trained_on["policy_reason"].startswith("warm falls back to full: architecture differs")
    assert "embedding: 8 -> 4" in full.trained_on["policy_reason"]


def test_the_weekly_tick_requests_one_retrain_without_new_days() -> None:
    """After the eager request is handled, the next Sunday tick requests trained_model once more."""
    from datetime import timedelta

    from movierec_assets.ml.policy import latest_full_tick

    @dg.asset(name="user_features")
    def users() -> None: ...

    @dg.asset(name="movie_features")
    def movies() -> None: ...

    @dg.asset(name="scaling_stats")
    def stats() -> None: ...

    defs = dg.Definitions(assets=[users, movies, stats, trained_model], resources={"postgres": PostgresResource()})
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey("trained_model")
    now = datetime.now(UTC)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    dg.materialize([users, movies, stats], instance=instance)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=now + timedelta(seconds=30))
    assert result.get_num_requested(key) == 1  # eager: the features refreshed
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=now + timedelta(minutes=1))
    assert result.get_num_requested(key) == 0
    tick = latest_full_tick(now) + timedelta(days=7)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=tick + timedelta(minutes=1))
    assert result.get_num_requested(key) == 1  # the weekly tick, no update needed
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                               evaluation_time=tick + timedelta(minutes=2))
    assert result.get_num_requested(key) == 0  # once per tick
