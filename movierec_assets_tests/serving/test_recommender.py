"""The Recommender on random embeddings: exact order, seen movies masked, cold start, validation,
similar movies, and hot reload."""

from __future__ import annotations

import numpy as np
import pytest

from movierec_assets.serving.online.recommender import InvalidRequest, NotFound, NotReady, Recommender
from movierec_assets_tests.serving.helpers import COLUMNS, assert_same_answer, brute_force, make_world
from movierec_assets_tests.serving.memory import MemoryStateLoader, MemoryUserSource


def test_recommend_matches_float64_reference_and_never_returns_seen() -> None:
    world = make_world()
    rec = world.recommender()
    state = rec.state
    for user_id in range(1, 41):
        result = rec.recommend(user_id, 25)
        seen = set(world.users.seen[user_id].tolist())
        got = [item.movie_id for item in result.items]
        assert not seen & set(got)
        query = state.encoder.encode(world.users.features[user_id][None, :], user_id)
        seen_rows = set(state.store.rows_of(np.array(sorted(seen), dtype=np.int64)).tolist())
        expected = brute_force(state.store.matrix, query, 25, seen_rows)
        assert got == state.store.movie_ids[expected].tolist()
        assert result.cold_start is False and result.model_version == "v1"
        scores = [item.score for item in result.items]
        assert scores == sorted(scores, reverse=True)
        first = result.items[0]
        row = int(state.store.rows_of(np.array([first.movie_id]))[0])
        assert first.title == state.catalog.titles[row] and first.genres == state.catalog.genres[row]


def test_cold_start_users_get_popular_unseen_movies() -> None:
    world = make_world()
    rec = world.recommender()
    popular_ids = rec.state.store.movie_ids[rec.state.catalog.popular_rows].tolist()
    unknown = rec.recommend(999_999, 7)
    assert unknown.cold_start and [i.movie_id for i in unknown.items] == popular_ids[:7]
    assert all(i.score is None for i in unknown.items)
    rated = set(world.users.seen[41].tolist())  # ratings but no features yet
    result = rec.recommend(41, 7)
    assert result.cold_start
    assert [i.movie_id for i in result.items] == [m for m in popular_ids if m not in rated][:7]


@pytest.mark.parametrize("user_id", [-1, "3", 2.0, True, None, 2**31])
def test_invalid_user_ids_are_rejected(user_id: object) -> None:
    rec = make_world().recommender()
    with pytest.raises(InvalidRequest, match="user_id"):
        rec.recommend(user_id, 10)
    assert issubclass(InvalidRequest, ValueError)


@pytest.mark.parametrize("n", [0, 101, -5, 1.5, "10", False])
def test_n_outside_1_to_100_is_rejected(n: object) -> None:
    rec = make_world().recommender()
    with pytest.raises(InvalidRequest, match="n must be"):
        rec.recommend(1, n)
    with pytest.raises(InvalidRequest, match="n must be"):
        rec.similar(int(rec.state.store.movie_ids[0]), n)


def test_similar_is_cosine_order_without_the_movie_itself() -> None:
    world = make_world()
    rec = world.recommender()
    state = rec.state
    movie_id = int(state.store.movie_ids[17])
    got = [i.movie_id for i in rec.similar(movie_id, 12).items]
    expected = brute_force(state.unit, state.unit[17], 12, {17})
    assert got == state.store.movie_ids[expected].tolist() and movie_id not in got
    with pytest.raises(NotFound):
        rec.similar(int(state.store.movie_ids.max()) + 1, 5)
    with pytest.raises(InvalidRequest):
        rec.similar(-3, 5)


def test_reload_swaps_versions_and_respects_the_interval() -> None:
    world = make_world()
    rec = world.recommender(reload_every=3600)
    assert rec.version == "v1" and world.loader.loads == 1
    world.loader.publish(world.new_state("v2"))
    assert rec.maybe_reload() is False and rec.version == "v1"  # checked less than an hour ago
    assert rec.maybe_reload(force=True) is True and rec.version == "v2"
    assert rec.recommend(1, 3).model_version == "v2"
    assert rec.maybe_reload(force=True) is False and world.loader.loads == 2  # same version: no load


def test_failed_load_keeps_serving_the_old_version() -> None:
    world = make_world()
    rec = world.recommender()
    world.loader.current = "v-missing"  # servable but its load raises
    assert rec.maybe_reload(force=True) is False
    assert rec.recommend(1, 3).model_version == "v1"


def test_no_embeddings_yet_is_not_ready() -> None:
    rec = Recommender(MemoryStateLoader(), MemoryUserSource(COLUMNS), 0.0)
    with pytest.raises(NotReady):
        rec.recommend(1, 3)
    assert rec.health()["status"] == "no_embeddings"


def test_non_finite_features_get_popular_movies_and_leave_the_batch_alone() -> None:
    """A NaN feature must not reach the scores, nor the batch's shared int8 scale."""
    world = make_world()
    rec = world.recommender()
    alone = {u: rec.recommend(u, 10) for u in (1, 2, 3)}
    world.users.features[2] = np.full(len(COLUMNS), np.nan, np.float32)
    popular_ids = rec.state.store.movie_ids[rec.state.catalog.popular_rows].tolist()
    batch = rec.recommend_many([(1, 10), (2, 10), (3, 10)])
    broken = batch[1].recommendations()
    assert broken.cold_start and [i.movie_id for i in broken.items] == \
        [m for m in popular_ids if m not in set(world.users.seen[2].tolist())][:10]
    assert_same_answer(batch[0].recommendations(), alone[1])
    assert_same_answer(batch[2].recommendations(), alone[3])
