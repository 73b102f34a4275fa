"""The ranking prior is fitted on validation events and kept only when it helps."""

from __future__ import annotations

import numpy as np

from movierec_assets.features.compute import movie_feature_columns
from movierec_assets.ml.ranking import fit_prior

COLUMNS = movie_feature_columns()
N_USERS, N_MOVIES = 40, 60


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users, movies = (x / np.linalg.norm(x, axis=1, keepdims=True)
                     for x in (rng.standard_normal((n, 8)).astype(np.float32) for n in (N_USERS, N_MOVIES)))
    features = np.zeros((N_MOVIES, len(COLUMNS)), np.float32)
    features[:, COLUMNS.index("log_count")] = np.where(np.arange(N_MOVIES) < 3, 3.0, -0.5)  # 0-2: blockbusters
    return users, movies, features


def _events(movie_of_user: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.arange(N_USERS, dtype=np.int32)
    return u, movie_of_user.astype(np.int32), np.full(N_USERS, 5.0, np.float32)


def test_popular_future_picks_the_popularity_prior() -> None:
    users, movies, features = _world()
    seen = (np.repeat(np.arange(N_USERS, dtype=np.int32), 2), np.tile(np.array([0, 1], np.int32), N_USERS))
    held = _events(np.full(N_USERS, 2))  # the one blockbuster nobody has seen yet
    choice = fit_prior(users, movies, features, COLUMNS, seen, held)
    assert set(choice.terms) == {"log_count"} and choice.terms["log_count"] > 0
    assert choice.ndcg == 1.0 and choice.ndcg_without < 0.5
    assert choice.weights[COLUMNS.index("log_count")] == choice.terms["log_count"]
    assert np.count_nonzero(choice.weights) == 1


def test_no_prior_when_the_cosine_already_ranks_perfectly() -> None:
    users, movies, features = _world(1)
    best = np.argmax(users @ movies.T, axis=1)  # each user's top cosine movie is what they rate next
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32))
    choice = fit_prior(users, movies, features, COLUMNS, empty, _events(best))
    assert choice.terms == {} and not choice.weights.any()
    assert choice.ndcg == choice.ndcg_without == 1.0


def test_hand_made_feature_matrices_get_no_prior() -> None:
    users, movies, _ = _world()
    choice = fit_prior(users, movies, np.ones((N_MOVIES, 3), np.float32), COLUMNS,
                       (np.zeros(0, np.int32), np.zeros(0, np.int32)), _events(np.zeros(N_USERS)))
    assert choice.terms == {} and choice.weights.shape == (3,)


def test_no_liked_validation_event_gives_no_prior_and_no_error() -> None:
    """A small warm update whose holdout holds no liked rating (e.g. one 3-star rating of a day)
    has no validation query: no prior, nothing scored, no error."""
    users, movies, features = _world()
    seen = (np.array([0, 1], np.int32), np.array([5, 6], np.int32))
    held = (np.array([0], np.int32), np.array([2], np.int32), np.array([3.0], np.float32))
    choice = fit_prior(users, movies, features, COLUMNS, seen, held)
    assert choice.terms == {} and not choice.weights.any() and choice.n_users == 0


def test_a_warm_update_with_too_few_validation_users_keeps_its_parents_prior() -> None:
    """A one-day holdout is no evidence for a prior: the model keeps the weights it came with (a
    warm update, its parent's). With enough validation users the prior is fitted anew."""
    import logging

    from keras import ops

    from movierec_assets.ml.pipeline import FeatureMatrices, RatingArrays
    from movierec_assets.ml.ranking import MIN_USERS
    from movierec_assets.ml.train import TrainConfig, _fit_ranking_prior
    from movierec_assets.ml.two_tower import build_model

    users, movies, features = _world()
    rng = np.random.default_rng(0)
    fm = FeatureMatrices(np.arange(1, N_USERS + 1), rng.standard_normal((N_USERS, 4)).astype(np.float32),
                         np.arange(1, N_MOVIES + 1), features)
    model = build_model(4, len(COLUMNS), user_layers=(8,), movie_layers=(8,), embedding=8)
    parent = np.linspace(-0.1, 0.1, len(COLUMNS)).astype(np.float32)
    model.rank_weights.assign(parent)
    tr = RatingArrays(np.array([0, 1], np.int32), np.array([5, 6], np.int32), np.array([4.0, 4.0], np.float32),
                      np.array([1, 2], np.int64))

    def holdout(n_users: int) -> RatingArrays:
        u = np.arange(n_users, dtype=np.int32)
        return RatingArrays(u, np.full(n_users, 2, np.int32), np.full(n_users, 5.0, np.float32),
                            np.arange(n_users, dtype=np.int64) + 10)

    log = logging.getLogger("test")
    few = _fit_ranking_prior(model, tr, holdout(MIN_USERS - 1), fm, TrainConfig(), log)
    assert few is not None and few["kept"] and np.array_equal(ops.convert_to_numpy(model.rank_weights), parent)
    enough = _fit_ranking_prior(model, tr, holdout(N_USERS), fm, TrainConfig(), log)
    assert enough is not None and "kept" not in enough and enough["val_users"] == N_USERS
    assert not np.array_equal(ops.convert_to_numpy(model.rank_weights), parent)
