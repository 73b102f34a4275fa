"""The ranking baselines (EASE, item-kNN, iALS) against direct computations on hand-made inputs."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from movierec_assets.ml import ease, ials, itemknn
from movierec_assets.ml.interactions import interactions, item_set, popularity, rating_matrix
from movierec_assets.ml.metrics import top_k
from movierec_assets.ml.scoreboard import History
from movierec_assets.ml.tuning import Ranker, inner_split, refit

# 5 users x 5 movies, 0/1 interactions.
X = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 1]], float)


def unseen_top(scores: np.ndarray, seen: np.ndarray, k: int) -> list[int]:
    s = scores.copy()
    s[seen > 0] = -np.inf
    return top_k(s[None, :], k)[0].tolist()


def test_ease_matches_the_closed_form_and_ranks_exactly() -> None:
    lam = 1.0
    p = np.linalg.inv(X.T @ X + lam * np.eye(5))
    b = np.eye(5) - p @ np.diag(1.0 / np.diag(p))
    np.fill_diagonal(b, 0.0)
    model = ease.fit_ease(sp.csr_matrix(X), lam)
    np.testing.assert_allclose(model.weights, b, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0)
    query = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 1, 1]], float)
    scores = model.score(sp.csr_matrix(query))
    np.testing.assert_allclose(scores, query @ b, atol=1e-6)
    assert scores[0, 1] == pytest.approx(0.5, abs=1e-6)  # co-rated with movie 0 by two of three users
    assert unseen_top(scores[0], query[0], 3) == [1, 4, 2]
    assert unseen_top(scores[1], query[1], 3) == [2, 0, 1]


def test_ease_ignores_movies_without_interactions() -> None:
    wide = np.hstack([X, np.zeros((5, 2))])  # movies 5 and 6: never rated
    model = ease.fit_ease(sp.csr_matrix(wide), 1.0)
    assert model.items.tolist() == [0, 1, 2, 3, 4]
    scores = model.score(sp.csr_matrix(wide[:1]))
    np.testing.assert_allclose(scores[:, :5], ease.fit_ease(sp.csr_matrix(X), 1.0).score(sp.csr_matrix(X[:1])))
    assert (scores[:, 5:] < -1e5).all()  # ranked after every scored movie


def test_item_set_cap_keeps_the_most_rated() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 1, 0, 1], [0, 1, 0, 0]], float))
    assert item_set(x, 10).tolist() == [0, 1, 3]
    assert item_set(x, 2).tolist() == [1, 3]


def test_itemknn_is_shrunk_cosine_over_top_k_neighbours() -> None:
    shrink = 1.0
    norms = np.sqrt(X.sum(0))
    sim = (X.T @ X) / (np.outer(norms, norms) + shrink)
    np.fill_diagonal(sim, 0.0)
    # by hand: movies 0 and 1 are co-rated by 2 users, |x_0| = sqrt(3), |x_1| = sqrt(3)
    assert sim[0, 1] == pytest.approx(2 / (3 + 1))
    np.testing.assert_allclose(itemknn.cosine_similarity(sp.csr_matrix(X), shrink), sim, atol=1e-6)
    model = itemknn.fit_itemknn(sp.csr_matrix(X), k=2, shrink=shrink)
    dense = model.weights.toarray()
    for j in range(5):  # column j keeps exactly its two most similar movies
        keep = np.argsort(-sim[:, j], kind="stable")[:2]
        expected = np.zeros(5)
        expected[keep] = sim[keep, j]
        np.testing.assert_allclose(dense[:, j], expected, atol=1e-6)
    user = np.array([[1, 0, 1, 0, 0]], float)
    np.testing.assert_allclose(model.score(sp.csr_matrix(user)), user @ dense, atol=1e-6)


def test_ials_fold_in_is_the_least_squares_solve_against_fixed_item_factors() -> None:
    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    factors, reg, alpha = 4, 0.5, 3.0
    model = ials.fit_ials(train, factors=factors, regularization=reg, alpha=alpha, iterations=5)
    y = model.item_factors.astype(np.float64)
    user = np.zeros(12)
    user[[1, 4, 7]] = 1.0
    # Direct: minimise sum_i c_i (p_i - x . y_i)^2 + reg |x|^2, c_i = alpha on interactions, else 1.
    c = np.where(user > 0, alpha * user, 1.0)
    p = (user > 0).astype(float)
    a = np.vstack([np.sqrt(c)[:, None] * y, math.sqrt(reg) * np.eye(factors)])
    target = np.concatenate([np.sqrt(c) * p, np.zeros(factors)])
    direct = np.linalg.lstsq(a, target, rcond=None)[0]
    folded = model.fold_in(sp.csr_matrix(user[None, :]))
    np.testing.assert_allclose(folded[0], direct, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.score(sp.csr_matrix(user[None, :]))[0], y @ folded[0], rtol=1e-5, atol=1e-6)


def test_interactions_schemes_and_last_rating_wins() -> None:
    r = rating_matrix(np.array([0, 0, 1, 0]), np.array([0, 1, 1, 0]), np.array([3.0, 4.5, 2.0, 5.0]), (2, 3))
    assert r.toarray().tolist() == [[5.0, 4.5, 0.0], [0.0, 2.0, 0.0]]  # (0, 0): 3.0 then 5.0
    assert interactions(r, "all").toarray().tolist() == [[1, 1, 0], [0, 1, 0]]
    assert interactions(r, "liked").toarray().tolist() == [[1, 1, 0], [0, 0, 0]]
    assert popularity(interactions(r, "all")).tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_ranker_falls_back_to_popularity_without_interactions() -> None:
    r = sp.csr_matrix(X * 4.0)
    ranker = refit("itemknn", r, {"scheme": "liked", "k": 2, "shrink": 0.0}, 100)
    empty = sp.csr_matrix((2, 5), dtype=np.float32)
    scores = ranker.scorer(empty)(np.array([0, 1]))
    assert ranker.pop.tolist() == pytest.approx([3 / 4, 3 / 4, 3 / 4, 2 / 4, 2 / 4])  # counts / (max + 1)
    np.testing.assert_allclose(scores[0], ranker.pop * (1 + 1e-9))
    assert top_k(scores, 4)[0].tolist() == [0, 1, 2, 3]  # most interacted first, ties by index


def test_inner_split_protocol_b_holds_out_each_users_newest_ratings() -> None:
    # user 0: 10 ratings (2 held out, the newest), user 1: 5 ratings (too few: none held out)
    u = np.array([0] * 10 + [1] * 5)
    m = np.array(list(range(10)) + list(range(5)))
    t = np.array(list(range(10, 0, -1)) + list(range(5)))  # user 0 rated movie 9 first, movie 0 last
    r = np.full(15, 4.0)
    split = inner_split(u, m, r, t, (2, 10), "B", 0.2, 10)
    assert sorted(zip(split.held[0].tolist(), split.held[1].tolist(), strict=True)) == [(0, 0), (0, 1)]
    assert split.fit[0].nnz == 8 and split.fit[1].nnz == 5
    assert split.users.tolist() == [0]


def test_inner_split_protocol_a_is_the_newest_ratings_on_the_timeline() -> None:
    u, m = np.array([0, 1, 0, 1, 2]), np.array([0, 0, 1, 1, 2])
    t, r = np.array([1, 2, 3, 4, 5]), np.array([4.0, 4.0, 4.0, 5.0, 4.0])
    split = inner_split(u, m, r, t, (3, 3), "A", 0.4)
    assert split.held[0].tolist() == [1, 2] and split.held[1].tolist() == [1, 2]
    assert split.users.tolist() == [1]  # user 2 has no earlier rating: not a validation query


def _ratings(rows: list[tuple[int, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32,
                                      "rated_at": pl.Int64}, orient="row").with_columns(
        pl.from_epoch("rated_at", "s").dt.replace_time_zone("UTC"))


def test_history_scores_use_only_the_ratings_given() -> None:
    ranker = Ranker("ease", "all", ease.fit_ease(sp.csr_matrix(X), 1.0), popularity(sp.csr_matrix(X)))
    user_ids, movie_ids = np.array([10, 20], np.int32), np.arange(1, 6, dtype=np.int32)
    before = _ratings([(10, 1, 4.0, 100), (20, 4, 3.0, 100)])
    later = pl.concat([before, _ratings([(10, 3, 5.0, 900), (10, 5, 5.0, 900)])])
    cut = later.filter(pl.col("rated_at") < pl.from_epoch(pl.lit(500), "s").dt.replace_time_zone("UTC"))
    a = ranker.scorer(History.build(before, user_ids, movie_ids).ratings)(np.array([0, 1]))
    b = ranker.scorer(History.build(cut, user_ids, movie_ids).ratings)(np.array([0, 1]))
    c = ranker.scorer(History.build(later, user_ids, movie_ids).ratings)(np.array([0, 1]))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], c[0]) and np.allclose(a[1], c[1])
