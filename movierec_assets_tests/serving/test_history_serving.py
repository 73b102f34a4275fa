"""A history-aware champion served from the real PostgreSQL: answers follow Keras' `embed_users`
over each user's newest N ratings (the movielens.user_rated row), the batch table agrees with the
API, bad input (no history, unknown or removed movies, long histories) is handled and counted, and
a user whose ratings arrive (a real concurrent day load) while requests run gets the old answer or
the new one, never a mix."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from movierec_assets.db import bulk
from movierec_assets.db.connect import connect
from movierec_assets.ingest import rated
from movierec_assets_tests.serving.helpers import assert_same_answer, fit_and_promote
from movierec_assets_tests.serving.test_database import HISTORY, load_world, materialize, seen_by

N_HIST = 2  # user 5 has 5 ratings, users 1-4 three: every history is cut to the newest 2
DAY = date(2024, 6, 5)
SCORE_ATOL = 2e-5  # user vectors within 1e-5 of Keras', unit movie vectors


def train_history_champion(url: str, seed: int) -> str:
    """A tiny real history-aware model (ID rows for movies 1-11) fitted on the history, promoted."""
    import keras

    from movierec_assets import features
    from movierec_assets.ml import feature_io, two_tower
    from movierec_assets.ml.history import histories_for_users

    keras.utils.set_random_seed(seed)
    users, movies, stats = feature_io.load_feature_tables(url)
    m = feature_io.matrices(users, movies, stats)
    model = two_tower.build_model(len(features.user_feature_columns()), len(features.movie_feature_columns()),
                                  movie_vocab=np.arange(1, 12), user_layers=[16], movie_layers=[16], embedding=8,
                                  id_dim=4, history_len=N_HIST, history_layers=[8], history_dropout=0.0)
    rows = ratings_rows(url)
    return fit_and_promote(url, model, m, stats, HISTORY,
                           lambda users: histories_for_users(rows, users, N_HIST).inputs())


def ratings_rows(url: str) -> pl.DataFrame:
    return bulk.read_polars(url, "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings")


def keras_reference(url: str, rec, user: int, n: int) -> tuple[list[int], np.ndarray]:  # type: ignore[no-untyped-def]
    """The model's own answer: Keras `embed_users` on ml/history.py's histories, float64 scores."""
    from movierec_assets.features import load_scaling_stats, scale
    from movierec_assets.ml import registry
    from movierec_assets.ml.history import histories_for_users
    from movierec_assets.ml.two_tower import embed_users

    model = registry.load_model(registry.get_version(url, rec.version).path)
    store = rec.state.store
    users = bulk.read_polars(url, "SELECT * FROM features.user_features").filter(pl.col("user_id") == user)
    x = scale(users, load_scaling_stats(url), "user_features")
    hist = histories_for_users(ratings_rows(url), np.array([user]), N_HIST, known_movie_ids=store.movie_ids)
    query = embed_users(model, x, np.array([user]), hist)[0]
    scores = store.matrix.astype(np.float64) @ query.astype(np.float64)
    seen = set(ratings_rows(url).filter(pl.col("user_id") == user)["movie_id"].to_list())
    order = [r for r in np.argsort(-scores, kind="stable") if int(store.movie_ids[r]) not in seen][:n]
    return store.movie_ids[order].tolist(), scores[order]


@pytest.fixture
def served(pg_url: str):  # type: ignore[no-untyped-def]
    from movierec_assets.assets.serving import movie_embeddings
    from movierec_assets.serving.online.recommender import from_database

    load_world(pg_url)
    train_history_champion(pg_url, seed=3)
    materialize(movie_embeddings)
    return from_database(pg_url, reload_every=3600)


def test_history_answers_follow_keras_and_the_batch_table(pg_url: str, served) -> None:  # type: ignore[no-untyped-def]
    from movierec_assets.assets.serving import user_recommendations
    from movierec_assets.serving.online.history_tower import HistoryEncoder

    rec = served
    assert isinstance(rec.state.encoder, HistoryEncoder) and rec.state.encoder.history_len == N_HIST
    online = {}
    for user in range(1, 7):
        got = rec.recommend(user, 100)
        ids, scores = keras_reference(pg_url, rec, user, 100)
        assert not got.cold_start and [i.movie_id for i in got.items] == ids and not seen_by(user) & set(ids)
        np.testing.assert_allclose([i.score for i in got.items], scores, rtol=0, atol=SCORE_ATOL)
        online[user] = rec.recommend(user, 10)
    truncated = rec.health()["history_truncated_users"]
    assert truncated >= 6  # every user 1-6 has more than N_HIST ratings
    for user, answer in zip(range(1, 7), rec.recommend_many([(u, 10) for u in range(1, 7)]), strict=True):
        assert_same_answer(answer.recommendations(), online[user])  # alone == in a batch
    materialize(user_recommendations)
    table = bulk.read_polars(pg_url, "SELECT user_id, movie_id, score FROM ml.user_recommendations"
                                     " ORDER BY user_id, rank")
    for user in range(1, 7):
        rows = table.filter(pl.col("user_id") == user)
        assert rows["movie_id"].to_list() == [i.movie_id for i in online[user].items]  # batch == API
        np.testing.assert_allclose(rows["score"].to_numpy(), [i.score for i in online[user].items], atol=1e-6)


def test_bad_history_input(pg_url: str, served) -> None:  # type: ignore[no-untyped-def]
    rec = served
    before = {u: rec.recommend(u, 10) for u in (1, 6)}
    # Movie 13 is new: the served version has no embedding for it (as for a movie removed from
    # the catalogue since). User 1's two ratings of it are skipped and counted, and change nothing.
    with connect(pg_url) as conn, conn.transaction():
        conn.execute("INSERT INTO movielens.movies (movie_id, title, year, genres) VALUES (13, 'New', 2024, '{}')")
        conn.execute("INSERT INTO movielens.ratings (user_id, movie_id, rating, rated_at) VALUES "
                     "(1, 13, 5.0, %s), (1, 13, 1.0, %s)", (datetime(2024, 6, 9, tzinfo=UTC),
                                                            datetime(2024, 6, 10, tzinfo=UTC)))
    with bulk.transaction(pg_url) as conn:
        rated.refresh_users(conn, [1])
    skipped = rec.health()["history_skipped_ids"]
    assert_same_answer(rec.recommend(1, 10), before[1])
    assert rec.health()["history_skipped_ids"] == skipped + 2
    # No history at all (every rating gone, the features row still there): labelled cold start.
    with connect(pg_url) as conn, conn.transaction():
        conn.execute("DELETE FROM movielens.ratings WHERE user_id = 6")
    with bulk.transaction(pg_url) as conn:
        rated.refresh_users(conn, [6])
    cold = rec.recommend(6, 5)
    assert cold.cold_start and all(i.score is None for i in cold.items) and not before[6].cold_start
    popular = rec.state.store.movie_ids[rec.state.catalog.popular_rows].tolist()
    assert [i.movie_id for i in cold.items] == popular[:5]
    assert rec.recommend(7, 5).cold_start and rec.recommend(424242, 5).cold_start  # no features


def test_a_concurrent_day_load_gives_the_old_or_the_new_answer(pg_url: str, served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Day files A and B of user 2 alternate through real load_days transactions while another
    thread asks for user 2's answer: every answer is exactly A's or B's (the seen-mask and the
    history come from one snapshot of one row)."""
    from movierec_assets.ingest.days import load_days

    rec = served
    base = int(datetime(2024, 6, 5, tzinfo=UTC).timestamp())
    versions = {"A": [(7, 5.0), (8, 4.5)], "B": [(9, 0.5), (10, 1.0), (11, 1.5)]}

    def write(name: str) -> None:
        lines = "".join(f"2,{m},{r},{base + 60 * k}\n" for k, (m, r) in enumerate(versions[name]))
        (tmp_path / f"{DAY.isoformat()}.csv").write_text("userId,movieId,rating,timestamp\n" + lines)

    expected = {}
    for name in versions:
        write(name)
        load_days(pg_url, [DAY], tmp_path)
        expected[name] = rec.recommend(2, 10).to_dict()
    assert expected["A"]["items"] != expected["B"]["items"]
    stop, answers, errors = threading.Event(), [], []

    def ask() -> None:
        while not stop.is_set():
            try:
                answers.append(rec.recommend(2, 10).to_dict())
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for k in range(12):
            write("A" if k % 2 == 0 else "B")
            load_days(pg_url, [DAY], tmp_path)
    finally:
        stop.set()
        asker.join(30)
    assert not errors and len(answers) > 20
    seen = {"A": 0, "B": 0}
    for answer in answers:
        match = [name for name, want in expected.items() if _same(answer, want)]
        assert match, answer
        seen[match[0]] += 1
    assert seen["A"] and seen["B"], seen


def _same(got: dict, want: dict) -> bool:
    try:
        assert_same_answer(got, want)
    except AssertionError:
        return False
    return True
