"""Baselines, all numpy and all fitted once at the training cutoff (like the model).

Every baseline works on dense integer indices: users 0..n_users-1, movies 0..n_movies-1.
Indices at or beyond what was seen in training are unknown and fall back to the non-personal part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GlobalMean:
    mu: float = 0.0

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray) -> GlobalMean:
        self.mu = float(np.mean(ratings))
        return self

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mu, np.float32)


def _lookup(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """table[idx], with 0 for indices outside the table (unknown users/movies)."""
    out = np.zeros(len(idx), table.dtype if table.ndim == 1 else np.float64)
    inside = (idx >= 0) & (idx < len(table))
    out[inside] = table[idx[inside]]
    return out


@dataclass
class BiasModel:
    """r = mu + b_user + b_movie, regularised; alternating closed-form updates (ALS-style)."""

    reg_user: float = 5.0
    reg_movie: float = 10.0
    iterations: int = 10
    mu: float = 0.0
    b_user: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b_movie: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
            n_users: int | None = None, n_movies: int | None = None) -> BiasModel:
        n_users = n_users or int(users.max()) + 1
        n_movies = n_movies or int(movies.max()) + 1
        r = ratings.astype(np.float64)
        self.mu = float(r.mean())
        cu = np.bincount(users, minlength=n_users)
        cm = np.bincount(movies, minlength=n_movies)
        self.b_user, self.b_movie = np.zeros(n_users), np.zeros(n_movies)
        for _ in range(self.iterations):
            self.b_movie = np.bincount(movies, r - self.mu - self.b_user[users], n_movies) / (cm + self.reg_movie)
            self.b_user = np.bincount(users, r - self.mu - self.b_movie[movies], n_users) / (cu + self.reg_user)
        return self

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        pred = self.mu + _lookup(self.b_user, users) + _lookup(self.b_movie, movies)
        return np.clip(pred, 0.5, 5.0).astype(np.float32)

    def score(self, users: np.ndarray, n_movies: int) -> np.ndarray:
        """Ranking scores: the user bias is constant per row, so this ranks by movie bias."""
        b = _lookup(self.b_movie, np.arange(n_movies))
        return np.broadcast_to(b, (len(users), n_movies))


@dataclass
class Popularity:
    """Top-N by number of ratings >= 4 in training (ties by total ratings). Ranking only."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
            n_movies: int | None = None) -> Popularity:
        n_movies = n_movies or int(movies.max()) + 1
        liked = np.bincount(movies, (ratings >= 4).astype(np.float64), n_movies)
        total = np.bincount(movies, minlength=n_movies)
        self.counts = liked + total / (total.max() + 1.0)
        return self

    def score(self, users: np.ndarray, n_movies: int) -> np.ndarray:
        return np.broadcast_to(_lookup(self.counts, np.arange(n_movies)), (len(users), n_movies))


@dataclass
class MatrixFactorization:
    """Biases + rank-k factors on the residuals, by weighted-lambda ALS (Zhou et al. 2008).

    Users unseen at fit time get zero factors: they cannot be personalised without retraining.
    """

    rank: int = 16
    reg: float = 0.05
    iterations: int = 8
    seed: int = 0
    bias: BiasModel = field(default_factory=BiasModel)
    p: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    q: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
            n_users: int | None = None, n_movies: int | None = None) -> MatrixFactorization:
        n_users = n_users or int(users.max()) + 1
        n_movies = n_movies or int(movies.max()) + 1
        self.bias.fit(users, movies, ratings, n_users, n_movies)
        resid = ratings - self.bias.mu - self.bias.b_user[users] - self.bias.b_movie[movies]
        rng = np.random.default_rng(self.seed)
        self.p = rng.normal(0, 0.1, (n_users, self.rank))
        self.q = rng.normal(0, 0.1, (n_movies, self.rank))
        for _ in range(self.iterations):
            self.p = _als_half(users, movies, resid, self.q, n_users, self.reg)
            self.q = _als_half(movies, users, resid, self.p, n_movies, self.reg)
        return self

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        pu = np.zeros((len(users), self.rank))
        inside = (users >= 0) & (users < len(self.p))
        pu[inside] = self.p[users[inside]]
        qi = np.zeros((len(movies), self.rank))
        inside_m = (movies >= 0) & (movies < len(self.q))
        qi[inside_m] = self.q[movies[inside_m]]
        base = self.bias.mu + _lookup(self.bias.b_user, users) + _lookup(self.bias.b_movie, movies)
        return np.clip(base + (pu * qi).sum(1), 0.5, 5.0).astype(np.float32)

    def score(self, users: np.ndarray, n_movies: int) -> np.ndarray:
        pu = np.zeros((len(users), self.rank))
        inside = users < len(self.p)
        pu[inside] = self.p[users[inside]]
        q = np.zeros((n_movies, self.rank))
        m = min(n_movies, len(self.q))
        q[:m] = self.q[:m]
        return pu @ q.T + _lookup(self.bias.b_movie, np.arange(n_movies))


def _als_half(own: np.ndarray, other: np.ndarray, resid: np.ndarray, factors: np.ndarray,
              n_own: int, reg: float, chunk: int = 16384) -> np.ndarray:
    """Solve every row's ridge regression (Q_u^T Q_u + reg*n_u*I) p_u = Q_u^T r_u at once.

    Gram matrices are summed chunk by chunk with one sort + reduceat per chunk (no per-row loop).
    """
    k = factors.shape[1]
    gram = np.zeros((n_own, k, k), np.float32)
    rhs = np.zeros((n_own, k), np.float32)
    factors = factors.astype(np.float32)
    order = np.argsort(own, kind="stable")
    own, other, resid = own[order], other[order], resid[order]
    for start in range(0, len(own), chunk):
        o, q = own[start : start + chunk], factors[other[start : start + chunk]]
        r = resid[start : start + chunk].astype(np.float32)
        bounds = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        rows = o[bounds]
        gram[rows] += np.add.reduceat(q[:, :, None] * q[:, None, :], bounds, axis=0)
        rhs[rows] += np.add.reduceat(q * r[:, None], bounds, axis=0)
    counts = np.bincount(own, minlength=n_own)
    gram += (reg * np.maximum(counts, 1))[:, None, None].astype(np.float32) * np.eye(k, dtype=np.float32)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0].astype(np.float64)
