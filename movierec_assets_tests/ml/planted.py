"""Tiny planted-structure data shared by the ml tests (no database needed)."""

from __future__ import annotations

import numpy as np

from movierec_assets.ml.pipeline import FeatureMatrices, RatingArrays


def planted(n_users: int = 200, n_movies: int = 120, per_user: int = 40, seed: int = 0,
            noise: float = 0.3) -> tuple[FeatureMatrices, RatingArrays]:
    """Users and movies each carry a 4-d taste vector in their features (plus 2 noise columns);
    rating = 3 + 1.8 * cos(user, movie) + noise, clipped to 0.5..5, at increasing timestamps."""
    rng = np.random.default_rng(seed)
    tu = rng.normal(size=(n_users, 4))
    tm = rng.normal(size=(n_movies, 4))
    tu /= np.linalg.norm(tu, axis=1, keepdims=True)
    tm /= np.linalg.norm(tm, axis=1, keepdims=True)
    user_matrix = np.hstack([tu, rng.normal(size=(n_users, 2))]).astype(np.float32)
    movie_matrix = np.hstack([tm, rng.normal(size=(n_movies, 2))]).astype(np.float32)
    u = np.repeat(np.arange(n_users), per_user)
    m = np.concatenate([rng.choice(n_movies, per_user, replace=False) for _ in range(n_users)])
    r = np.clip(3 + 1.8 * (tu[u] * tm[m]).sum(1) + rng.normal(0, noise, len(u)), 0.5, 5.0)
    order = rng.permutation(len(u))
    features = FeatureMatrices(
        user_ids=np.arange(1, n_users + 1, dtype=np.int32) * 3,
        user_matrix=user_matrix,
        movie_ids=np.arange(1, n_movies + 1, dtype=np.int32) * 7,
        movie_matrix=movie_matrix,
    )
    ratings = RatingArrays(
        user_idx=u[order].astype(np.int32),
        movie_idx=m[order].astype(np.int32),
        rating=r[order].astype(np.float32),
        rated_at=np.arange(len(u), dtype=np.int64) * 1_000_000,
    )
    return features, ratings
