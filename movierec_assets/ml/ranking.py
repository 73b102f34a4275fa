"""The ranking prior: which movies a user will rate next depends on exposure as well as taste.

The two-tower cosine is trained to predict ratings (and, through the retrieval loss, to find liked
movies), but top-N is judged on *which* movies users go on to rate and like, and that is dominated by
exposure: how widely a movie is seen. So top-N ranks by `cosine + w * x_popularity`, where
`x_popularity` is one of the movie tower's own scaled popularity features (all-time or 90-day log
rating count) and `w` is fitted after training on the time-ordered validation split, by NDCG@10 over
a small grid that includes 0 (no prior). The result is stored in the model's `rank_weights`, so it is
saved, versioned and served with the model; daily feature refreshes move the prior with no retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movierec_assets.ml.metrics import RankingResult, ranking_metrics

PRIOR_COLUMNS = ("log_count", "log_count_90d")
# Cosine units per standard deviation of the popularity feature.
PRIOR_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
MAX_USERS = 3000


@dataclass(frozen=True)
class PriorChoice:
    column: str | None  # None: no prior (w = 0 won)
    weight: float
    weights: np.ndarray  # (n_movie_features,) the model's rank_weights
    ndcg: float
    recall: float
    ndcg_without: float  # the same validation users, cosine only
    n_users: int
    table: list[dict[str, float | str]]


def prior_columns(movie_columns: list[str]) -> dict[str, int]:
    return {c: movie_columns.index(c) for c in PRIOR_COLUMNS if c in movie_columns}


def fit_prior(
    user_emb: np.ndarray,
    movie_emb: np.ndarray,
    movie_matrix: np.ndarray,
    movie_columns: list[str],
    seen: tuple[np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray],
    max_users: int = MAX_USERS,
    seed: int = 0,
) -> PriorChoice:
    """Pick (column, weight) maximising validation NDCG@10 (ties: the smaller weight).

    Indices are rows of `user_emb` / `movie_emb`; `seen` = training (user, movie) pairs, masked;
    `held_out` = validation (user, movie, rating) events. At most `max_users` users are ranked.
    """
    users = np.unique(held_out[0][held_out[2] >= 4.0])
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    # Matrices that are not the canonical feature set (hand-made test data) have no popularity column.
    cols = prior_columns(movie_columns) if movie_matrix.shape[1] == len(movie_columns) else {}
    base = movie_emb.T.astype(np.float32)

    def evaluate(bias: np.ndarray | None) -> RankingResult:
        def score(rows: np.ndarray) -> np.ndarray:
            s = user_emb[rows] @ base
            return s if bias is None else s + bias

        return ranking_metrics(score, users, seen, held_out)

    without = evaluate(None)
    best = ("", 0.0, without)
    table: list[dict[str, float | str]] = [{"column": "none", "weight": 0.0, "ndcg_at_10": without.ndcg,
                                            "recall_at_10": without.recall}]
    for name, j in cols.items():
        for w in PRIOR_GRID[1:]:
            res = evaluate(np.float32(w) * movie_matrix[:, j])
            table.append({"column": name, "weight": w, "ndcg_at_10": res.ndcg, "recall_at_10": res.recall})
            if res.n_users and res.ndcg > best[2].ndcg + 1e-12:
                best = (name, w, res)
    name, w, res = best
    weights = np.zeros(movie_matrix.shape[1], np.float32)
    if name:
        weights[cols[name]] = w
    return PriorChoice(name or None, float(w), weights, _nan0(res.ndcg), _nan0(res.recall), _nan0(without.ndcg),
                       res.n_users, table)


def _nan0(x: float) -> float:
    return 0.0 if x != x else float(x)
