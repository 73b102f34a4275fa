"""Scoring every method on the same events: the two-tower model and the baselines.

Index spaces: baselines use global dense indices (every user id / movie id of the dataset, sorted);
the model uses embeddings computed from whatever features are current for the evaluated users.
Every scorer may use the evaluated users' ratings so far (`History`: Protocol A, the ratings before
the day; Protocol B, the non-held-out ratings). The ranking baselines (item-kNN, EASE, iALS) score
from it with no refit; bias, popularity and MF ignore it (fitted once, like the model).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from movierec_assets.ml.baselines import BiasModel, GlobalMean, MatrixFactorization, Popularity
from movierec_assets.ml.interactions import rating_matrix
from movierec_assets.ml.metrics import RELEVANT_MIN_RATING, K, ranking_metrics
from movierec_assets.ml.pipeline import index_of
from movierec_assets.ml.tuning import Ranker

MODEL = "two_tower"
FALLBACK = "cold_start_fallback"


@dataclass(frozen=True)
class History:
    """The evaluated users' ratings so far: the frame and its users x movies CSR of stars (global
    indices), built once per query batch (a Protocol A day, or Protocol B's training ratings)."""

    prior: pl.DataFrame  # user_id, movie_id, rating, rated_at
    ratings: sp.csr_matrix

    @classmethod
    def build(cls, prior: pl.DataFrame, user_ids: np.ndarray, movie_ids: np.ndarray) -> History:
        prior = prior.sort("rated_at")  # on a re-rating, the newest value wins
        u, m = index_of(user_ids, prior["user_id"].to_numpy()), index_of(movie_ids, prior["movie_id"].to_numpy())
        ok = (u >= 0) & (m >= 0)
        shape = (len(user_ids), len(movie_ids))
        return cls(prior, rating_matrix(u[ok], m[ok], prior["rating"].to_numpy()[ok], shape))


@dataclass
class Baselines:
    """Every baseline, fitted once on the same training rows (global indices)."""

    global_mean: GlobalMean
    bias: BiasModel
    popularity: Popularity
    mf: MatrixFactorization
    rankers: list[Ranker] = field(default_factory=list)  # item-kNN, EASE, iALS (tuning.fit_rankers)

    @classmethod
    def fit(cls, u: np.ndarray, m: np.ndarray, r: np.ndarray, n_users: int, n_movies: int,
            mf_rank: int = 16) -> Baselines:
        r = r.astype(np.float64)
        return cls(
            GlobalMean().fit(u, m, r),
            BiasModel().fit(u, m, r, n_users, n_movies),
            Popularity().fit(u, m, r, n_movies),
            MatrixFactorization(rank=mf_rank).fit(u, m, r, n_users, n_movies),
        )

    def methods(self, n_movies: int, history: History | None = None
                ) -> dict[str, tuple[Callable | None, Callable | None]]:
        """name -> (predict(u, m), score(u_rows)); None where a method does not apply.

        The ranking baselines need `history` (the users' ratings so far) and rank only (no RMSE).
        """
        out: dict[str, tuple[Callable | None, Callable | None]] = {
            "global_mean": (self.global_mean.predict, None),
            "bias": (self.bias.predict, lambda u: self.bias.score(u, n_movies)),
            "popularity": (None, lambda u: self.popularity.score(u, n_movies)),
            "matrix_factorization": (self.mf.predict, lambda u: self.mf.score(u, n_movies)),
        }
        if history is not None:
            out.update({r.name: (None, r.scorer(history.ratings)) for r in self.rankers})
        return out

    def params(self) -> dict[str, dict[str, Any]]:
        """The chosen hyperparameters of each tuned baseline (for the rows' `params` field)."""
        return {r.name: r.params for r in self.rankers}

    def fallback(self, n_movies: int) -> tuple[Callable, Callable]:
        """What a user with no rating gets: movie bias for ratings, popularity for top-N."""
        return (lambda u, m: self.bias.predict(np.full(len(m), -1), m),
                lambda u: self.popularity.score(u, n_movies))


@dataclass
class Tally:
    """Sums behind one (group, method) cell, so days/batches can be added up exactly."""

    sse: float = 0.0
    n_events: int = 0
    recall_sum: float = 0.0
    ndcg_sum: float = 0.0
    n_queries: int = 0

    def row(self) -> dict[str, float | int]:
        q = self.n_queries
        return {
            "rmse": float(np.sqrt(self.sse / self.n_events)) if self.n_events else float("nan"),
            "recall_at_10": self.recall_sum / q if q else float("nan"),
            "ndcg_at_10": self.ndcg_sum / q if q else float("nan"),
            "n_events": self.n_events,
            "n_ranked_users": q,
        }


@dataclass
class Scoreboard:
    cells: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))

    def add(
        self,
        group: str,
        method: str,
        predict: Callable | None,
        score: Callable | None,
        events: tuple[np.ndarray, np.ndarray, np.ndarray],
        seen: tuple[np.ndarray, np.ndarray],
        k: int = K,
    ) -> None:
        """Score one method on `events` (user idx, movie idx, rating); `seen` = prior (user, movie)."""
        u, m, r = events
        cell = self.cells[(group, method)]
        if len(u) == 0:
            return
        if predict is not None:
            pred = np.clip(np.asarray(predict(u, m), np.float64), 0.5, 5.0)
            cell.sse += float(((pred - r) ** 2).sum())
            cell.n_events += len(u)
        if score is not None:
            users = np.unique(u[r >= RELEVANT_MIN_RATING])
            if users.size:
                res = ranking_metrics(score, users, seen, events, k)
                cell.recall_sum += res.recall * res.n_users if res.n_users else 0.0
                cell.ndcg_sum += res.ndcg * res.n_users if res.n_users else 0.0
                cell.n_queries += res.n_users

    def add_all(self, group: str, methods: dict[str, tuple[Callable | None, Callable | None]],
                events: tuple[np.ndarray, np.ndarray, np.ndarray], seen: tuple[np.ndarray, np.ndarray]) -> None:
        for name, (predict, score) in methods.items():
            self.add(group, name, predict, score, events, seen)

    def rows(self, params: dict[str, dict[str, Any]] | None = None, **labels: str) -> list[dict[str, object]]:
        """One row per (group, method); `params` (method -> chosen values) becomes a JSON string."""
        params = params or {}
        return [{**labels, "group": g, "method": meth, **t.row(),
                 "params": json.dumps(params[meth], sort_keys=True) if meth in params else None}
                for (g, meth), t in sorted(self.cells.items())]


def model_methods(user_emb: np.ndarray, user_pos: np.ndarray, movie_emb: np.ndarray,
                  scale: float, offset: float, movie_bias: np.ndarray | None = None) -> tuple[Callable, Callable]:
    """Model predict/score over global indices: `user_pos[global user idx]` = row of `user_emb`.

    Ratings use the cosine alone; rankings add the model's per-movie ranking bias when it has one.
    """

    def predict(u: np.ndarray, m: np.ndarray) -> np.ndarray:
        return offset + scale * np.einsum("ij,ij->i", user_emb[user_pos[u]], movie_emb[m])

    def score(u: np.ndarray) -> np.ndarray:
        scores = user_emb[user_pos[u]] @ movie_emb.T
        return scores if movie_bias is None else scores + movie_bias

    return predict, score
