"""End to end on the real server: a real (tiny, trained) two-tower champion, movie_embeddings and
user_recommendations materialized by Dagster, the Recommender and CLI on PostgreSQL, hot reload."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ingest import rated
from movierec_assets.resources.database import PostgresResource
from movierec_assets_tests.serving.helpers import assert_same_answer, fit_and_promote

# Hand-made catalogue: movie 12 has no ratings at all (a cold-start movie).
MOVIES = pl.DataFrame({
    "movie_id": pl.Series(range(1, 13), dtype=pl.Int32),
    "title": [f"Film {i}" for i in range(1, 13)],
    "year": pl.Series([1990 + i if i != 4 else None for i in range(1, 13)], dtype=pl.Int32),
    "genres": pl.Series([["Comedy"], ["Drama"], ["Action", "Sci-Fi"], []] * 3, dtype=pl.List(pl.String)),
})
HISTORY = [  # (user, movie, rating)
    (1, 1, 5.0), (1, 2, 3.0), (1, 3, 4.5), (2, 1, 1.0), (2, 4, 4.0), (2, 5, 5.0), (3, 6, 2.5),
    (3, 7, 4.0), (3, 8, 3.5), (4, 9, 5.0), (4, 10, 1.5), (4, 11, 3.0), (5, 1, 4.0), (5, 3, 2.0),
    (5, 6, 3.5), (6, 2, 4.0), (6, 9, 4.5),
]
PARTITION = [(5, 7, 4.5), (5, 9, 1.0), (7, 4, 3.0)]  # injected later; user 7 has no features yet
DAY = date(2024, 6, 2)


def _ratings(rows: list[tuple[int, int, float]], day: date | None, base_s: int) -> pl.DataFrame:
    return pl.DataFrame({
        "user_id": pl.Series([r[0] for r in rows], dtype=pl.Int32),
        "movie_id": pl.Series([r[1] for r in rows], dtype=pl.Int32),
        "rating": pl.Series([r[2] for r in rows], dtype=pl.Float32),
        "rated_at": pl.Series([datetime.fromtimestamp(base_s + i * 60, UTC) for i in range(len(rows))],
                              dtype=pl.Datetime("us", "UTC")),
        "partition_day": pl.Series([day] * len(rows), dtype=pl.Date),
    })


def load_world(url: str) -> None:
    """Movies, history + one partition of ratings, features (history only) and their stats."""
    from movierec_assets import features

    history = _ratings(HISTORY, None, int(datetime(2024, 6, 1, tzinfo=UTC).timestamp()))
    partition = _ratings(PARTITION, DAY, int(datetime(2024, 6, 2, tzinfo=UTC).timestamp()))
    with connect(url) as conn, conn.transaction():
        conn.execute("DELETE FROM ml.movie_embeddings")
        conn.execute("DELETE FROM ml.embedding_sets")
        conn.execute("TRUNCATE ml.user_recommendations")
        conn.execute("TRUNCATE movielens.ratings, movielens.movies")
    with adbc_connect(url) as conn:
        bulk.ingest(conn, "movielens", "movies", MOVIES)
        bulk.ingest(conn, "movielens", "ratings", pl.concat([history, partition]))
        conn.commit()
    rated.rebuild_all(url)  # written directly: the loaders would keep movielens.user_rated
    users = features.compute_user_features(history.lazy(), MOVIES.lazy())
    movies = features.compute_movie_features(history.lazy(), MOVIES.lazy(), None)
    features.write_user_features(url, users)
    features.write_movie_features(url, movies)
    features.write_scaling_stats(url, features.compute_scaling_stats(users, movies))


def train_champion(url: str, seed: int) -> str:
    """A tiny real model fitted for a few epochs on the history, saved, registered and promoted."""
    import keras

    from movierec_assets import features
    from movierec_assets.ml import feature_io, two_tower

    keras.utils.set_random_seed(seed)
    users, movies, stats = feature_io.load_feature_tables(url)
    m = feature_io.matrices(users, movies, stats)
    model = two_tower.build_model(len(features.user_feature_columns()), len(features.movie_feature_columns()),
                                  user_layers=[16], movie_layers=[16], embedding=8, id_buckets=31, id_dim=4)
    return fit_and_promote(url, model, m, stats, HISTORY)


def materialize(*assets: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    result = dg.materialize(list(assets), resources={"postgres": PostgresResource()})
    assert result.success
    return result


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [event] = result.asset_materializations_for_node(key)
    return {k: v.value for k, v in event.metadata.items()}


def seen_by(user: int) -> set[int]:
    return {m for u, m, _ in HISTORY + PARTITION if u == user}


def newest_first(user: int) -> list[int]:
    """The user's rated movies, newest first (rows are a minute apart in list order, days later)."""
    return [m for u, m, _ in reversed(HISTORY + PARTITION) if u == user]


def stars_of(user: int) -> dict[int, float]:
    return {m: r for u, m, r in HISTORY + PARTITION if u == user}


@pytest.fixture
def world(pg_url: str) -> str:
    load_world(pg_url)
    return pg_url


def test_embeddings_recommendations_cli_and_reload(world: str) -> None:
    from movierec_assets.assets.serving import movie_embeddings, user_recommendations
    from movierec_assets.cli import main
    from movierec_assets.features import load_scaling_stats, scale
    from movierec_assets.ml import registry
    from movierec_assets.serving.index import embeddings
    from movierec_assets.serving.online.recommender import InvalidRequest, NotFound, from_database
    from movierec_assets.serving.online.tower import KerasEncoder

    url = world
    v1 = train_champion(url, seed=1)
    meta = metadata(materialize(movie_embeddings), "movie_embeddings")
    assert meta["movie_count"] == 12 and meta["dimensions"] == 8 and meta["model_version"] == v1
    with connect(url) as conn:
        stored = conn.execute("SELECT count(*), count(*) FILTER (WHERE movie_id = 12)"
                              " FROM ml.movie_embeddings WHERE model_version = %s", (v1,)).fetchone()
        n_features = conn.execute("SELECT count(*) FROM features.movie_features").fetchone()[0]
    assert stored == (n_features, 1)  # every movie, the cold-start one included
    assert metadata(materialize(movie_embeddings), "movie_embeddings")["skipped"]  # same champion: no work

    rec = from_database(url, reload_every=0)
    assert rec.version == v1
    model = registry.load_model(registry.get_version(url, v1).path)
    keras_user = KerasEncoder(model.user_net)
    users = pl.DataFrame(bulk.read_polars(url, "SELECT * FROM features.user_features ORDER BY user_id"))
    stats = load_scaling_stats(url)
    for user in range(1, 7):
        result = rec.recommend(user, 100)
        got = [i.movie_id for i in result.items]
        assert not result.cold_start and not seen_by(user) & set(got)
        assert sorted(got) == sorted(set(range(1, 13)) - seen_by(user))  # 12 (no ratings) is servable
        query = keras_user.encode(scale(users.filter(pl.col("user_id") == user), stats, "user_features"), user)
        scores = rec.state.store.matrix.astype(np.float64) @ query
        rows = rec.state.store.rows_of(np.array(got))
        assert np.all(np.diff(scores[rows]) <= 1e-6)  # ordered by the Keras tower's scores
    cold = rec.recommend(7, 5)  # rated in a partition, no features yet
    assert cold.cold_start and 4 not in [i.movie_id for i in cold.items] and len(cold.items) == 5
    assert rec.recommend(424242, 3).cold_start
    similar = rec.similar(12, 4)
    assert len(similar.items) == 4 and 12 not in [i.movie_id for i in similar.items]
    assert similar.items[0].title is not None
    with pytest.raises(NotFound):
        rec.similar(99, 3)
    # One batch through the PostgreSQL batch lookup (= ANY): each answer equals its unbatched one.
    requests = [(3, 4), (7, 5), (1, 100), (424242, 3), (3, 2), (-1, 3), (6, 10)]
    batched = rec.recommend_many(requests)
    assert isinstance(batched[5], InvalidRequest)
    for (user, n), answer in zip(requests, batched, strict=True):
        if user >= 0:
            assert_same_answer(answer.recommendations(), rec.recommend(user, n))

    batch = metadata(materialize(user_recommendations), "user_recommendations")
    assert batch["users"] == 6 and batch["model_version"] == v1
    top = bulk.read_polars(url, "SELECT user_id, rank, movie_id, score FROM ml.user_recommendations"
                                " ORDER BY user_id, rank")
    for user in range(1, 7):
        batch = top.filter(pl.col("user_id") == user)
        online = rec.recommend(user, 10).items
        assert batch["movie_id"].to_list() == [i.movie_id for i in online]  # batch == online: ids and order
        np.testing.assert_allclose(batch["score"].to_numpy(), [i.score for i in online], rtol=1e-6, atol=1e-6)

    out = CliRunner().invoke(main, ["recommend", "5", "-n", "3", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["model_version"] == v1 and len(payload["items"]) == 3
    assert not seen_by(5) & {i["movie_id"] for i in payload["items"]}
    assert CliRunner().invoke(main, ["recommend", "5", "-n", "0"]).exit_code != 0

    # A new champion: served only once its embeddings exist; the .npy copy is optional.
    v2 = train_champion(url, seed=2)
    assert rec.maybe_reload(force=True) is False and rec.version == v1
    materialize(movie_embeddings)
    assert rec.maybe_reload(force=True) is True and rec.version == v2
    assert rec.recommend(1, 3).model_version == v2
    npy = embeddings.npy_dir_for(registry.get_version(url, v2).path)
    from_npy = embeddings.load(url, v2)
    shutil.rmtree(npy)
    from_db = embeddings.load(url, v2)
    assert np.array_equal(from_npy.matrix, from_db.matrix) and np.array_equal(from_npy.movie_ids, from_db.movie_ids)
    assert not Path(npy).exists()


def test_movie_embeddings_is_requested_after_trained_model_updates(pg_url: str) -> None:
    from movierec_assets.assets.serving import movie_embeddings, user_recommendations

    trained = dg.AssetSpec("trained_model")
    defs = dg.Definitions(assets=[trained, movie_embeddings, user_recommendations],
                          resources={"postgres": PostgresResource()})
    with dg.instance_for_test() as instance:
        for key in ("trained_model", "movie_embeddings", "user_recommendations"):
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # everything up to date
        instance.report_runless_asset_event(dg.AssetMaterialization("trained_model"))  # a new model
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        # One run: movie_embeddings, then user_recommendations after it (eager follows requested parents).
        assert second.get_num_requested(dg.AssetKey("movie_embeddings")) == 1
        assert second.get_num_requested(dg.AssetKey("user_recommendations")) == 1
        third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.total_requested == 0  # nothing new: no second request


def test_batch_lookup_agrees_with_the_per_user_lookup(world: str) -> None:
    """Packed rows read back exactly: features in canonical order (NULL as NaN), rated movies and
    stars newest first with history and partition ratings; unknown and repeated users keep their
    places."""
    from movierec_assets.serving.online.users import PostgresBatchUserSource

    with connect(world) as conn, conn.transaction():
        conn.execute("UPDATE features.user_features SET std_rating = NULL WHERE user_id = 3")
    source = PostgresBatchUserSource(world)
    ids = [5, 999, 3, 7, 5, 1]
    batch = source.lookup_many(ids)
    assert batch.row[1] is None and batch.row[3] is None  # unknown; ratings but no features (user 7)
    assert batch.row[0] == batch.row[4]
    for i, user in enumerate(ids):
        one = source.lookup(user)
        assert batch.seen[i].tolist() == one.seen.tolist() == newest_first(user)
        assert batch.stars[i].tolist() == one.stars.tolist() == [stars_of(user)[m] for m in newest_first(user)]
        if one.features is not None:
            expected = one.features.select(source.columns).cast(pl.Float64).to_numpy()[0]
            np.testing.assert_array_equal(batch.features[batch.row[i]], expected)  # type: ignore[index]
    assert np.isnan(batch.features[batch.row[2], source.columns.index("std_rating")])  # type: ignore[index]


def test_a_champion_without_its_scaling_stats_is_refused_not_served_with_todays(world: str) -> None:
    """Its own `scaling_stats.parquet` gone: the server refuses the version (and says so in
    /health), the batch path fails naming the file; nothing falls back to features.scaling_stats."""
    from movierec_assets.assets.serving import movie_embeddings
    from movierec_assets.ml import feature_io, registry
    from movierec_assets.serving.offline.batch import embed_champion
    from movierec_assets.serving.online.health import health
    from movierec_assets.serving.online.recommender import from_database
    from movierec_assets.serving.online.state import VersionRefused

    url = world
    train_champion(url, seed=1)
    materialize(movie_embeddings)
    rec = from_database(url, reload_every=0)
    v2 = train_champion(url, seed=2)
    materialize(movie_embeddings)  # embedded with v2's own stats
    missing = Path(registry.get_version(url, v2).path) / feature_io.STATS_FILE
    missing.unlink()
    assert rec.maybe_reload(force=True) is False and rec.version != v2
    status, body = health(rec, None, None)
    assert status == 200 and body["status"] == "degraded" and body["refused_version"] == v2
    assert str(missing) in body["detail"]
    fresh = from_database(url, reload_every=0)
    assert fresh.version is None and health(fresh, None, None)[0] == 503
    with pytest.raises(VersionRefused, match=re.escape(str(missing))):
        embed_champion(url, force=True)
