"""The ranking prior: which movies a user will rate next depends on exposure as well as taste.

The two-tower cosine is trained to predict ratings (and, through the retrieval loss, to find liked
movies), but top-N is judged on *which* movies users go on to rate and like, and that is dominated by
exposure: how widely a movie is seen. So top-N ranks by `cosine + movie_features @ rank_weights`,
a linear prior over a few of the movie tower's own scaled features (all-time and 90-day log rating
counts, shrunk mean rating). The weights are fitted after training on the time-ordered validation
split, by NDCG@10: a greedy search over a small grid, one feature at a time, that starts from no
prior at all, so a prior is kept only when it helps. They are stored in the model's `rank_weights`,
so they are saved, versioned and served with the model, and daily feature refreshes move the prior
with no retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movierec_assets.ml.metrics import RELEVANT_MIN_RATING, K, query_sets, recall_ndcg_at_k, top_k

PRIOR_COLUMNS = ("log_count", "log_count_90d", "shrunk_mean")
# Cosine units per standard deviation of the feature.
PRIOR_GRID = (-0.2, -0.1, -0.05, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
MAX_TERMS = 2
MAX_USERS = 3000
# Fewer validation users with a liked movie than this are no evidence for a prior: the model keeps
# the weights it has (ml/train.py).
MIN_USERS = 30
MAX_CELLS = 20_000_000  # users x movies held while searching (float32: 80 MB); ~230 users at ml-32m
BLOCK = 128  # users ranked at once: bounds the temporaries (scores + argpartition indices)


@dataclass(frozen=True)
class PriorChoice:
    terms: dict[str, float]  # feature -> weight; empty = no prior
    weights: np.ndarray  # (n_movie_features,) the model's rank_weights
    ndcg: float
    recall: float
    ndcg_without: float  # the same validation users, cosine only
    n_users: int

    def summary(self) -> dict[str, object]:
        return {"terms": self.terms, "val_ndcg_at_10": self.ndcg, "val_recall_at_10": self.recall,
                "val_ndcg_at_10_without": self.ndcg_without, "val_users": self.n_users}


class _Judge:
    """Validation users' masked cosine scores, computed once; scores any bias vector quickly."""

    def __init__(self, user_emb: np.ndarray, movie_emb: np.ndarray, users: np.ndarray,
                 seen: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        users, self.relevant, seen_by_row = query_sets(users, seen, held_out)
        self.scores = user_emb[users] @ movie_emb.T.astype(np.float32)
        for row, items in enumerate(seen_by_row):  # seen movies are never candidates
            self.scores[row, items] = -np.inf

    def __call__(self, bias: np.ndarray | None) -> tuple[float, float, int]:
        if not len(self.scores):  # no validation user liked anything: nothing to judge
            return 0.0, 0.0, 0
        recalls, ndcgs = [], []
        for start in range(0, len(self.scores), BLOCK):
            block = self.scores[start : start + BLOCK]
            r, g = recall_ndcg_at_k(top_k(block if bias is None else block + bias, K),
                                    self.relevant[start : start + BLOCK], K)
            recalls.append(r)
            ndcgs.append(g)
        recall, ndcg = np.concatenate(recalls), np.concatenate(ndcgs)
        valid = ~np.isnan(recall)
        if not valid.any():
            return 0.0, 0.0, 0
        return float(ndcg[valid].mean()), float(recall[valid].mean()), int(valid.sum())


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
    """Greedy: add the (feature, weight) that most raises validation NDCG@10, up to MAX_TERMS.

    Indices are rows of `user_emb` / `movie_emb`; `seen` = training (user, movie) pairs, masked;
    `held_out` = validation (user, movie, rating) events.
    """
    users = np.unique(held_out[0][held_out[2] >= RELEVANT_MIN_RATING])
    cap = max(1, min(max_users, MAX_CELLS // max(1, movie_emb.shape[0])))
    if len(users) > cap:
        users = np.sort(np.random.default_rng(seed).choice(users, cap, replace=False))
    # Matrices that are not the canonical feature set (hand-made test data) have no prior columns.
    cols = ({c: movie_columns.index(c) for c in PRIOR_COLUMNS if c in movie_columns}
            if movie_matrix.shape[1] == len(movie_columns) else {})
    judge = _Judge(user_emb, movie_emb, users, seen, held_out)
    weights = np.zeros(movie_matrix.shape[1], np.float32)
    best = without = judge(None)
    terms: dict[str, float] = {}
    for _ in range(MAX_TERMS):
        step = None
        for name in (c for c in cols if c not in terms):
            for w in PRIOR_GRID:
                trial = weights.copy()
                trial[cols[name]] = w
                res = judge(movie_matrix @ trial)
                if res[2] and res[0] > (step[2][0] if step else best[0]) + 1e-9:
                    step = (name, w, res)
        if step is None:
            break
        terms[step[0]] = step[1]
        weights[cols[step[0]]] = step[1]
        best = step[2]
    return PriorChoice(terms, weights, best[0], best[1], without[0], best[2])
