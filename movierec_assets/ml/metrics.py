"""Rating and top-K metrics, with exact definitions (numpy in, floats out).

- RMSE: sqrt(mean((prediction - rating)^2)) in stars, over every held-out event.
- Relevant items of a user: held-out ratings >= 4 on movies the user had not rated before the
  held-out period (re-ratings of an already-seen movie are not relevant).
- Candidates: every movie, minus the movies the user had rated before the held-out period (those
  are masked, as serving masks them).
- Recall@K = |top-K ∩ relevant| / min(K, |relevant|)  (so a perfect ranking scores 1).
- NDCG@K = DCG@K / IDCG@K with binary gains: DCG = sum over ranks r=1..K of rel_r / log2(r + 1),
  IDCG = the same for min(K, |relevant|) relevant items at the top.
- Both are averaged over users with at least one relevant item; `n_users` reports how many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RELEVANT_MIN_RATING = 4.0
K = 10  # the cut-off of every top-N metric (Recall@10, NDCG@10)


def rmse(prediction: np.ndarray, rating: np.ndarray) -> float:
    prediction, rating = np.asarray(prediction, np.float64), np.asarray(rating, np.float64)
    if prediction.shape != rating.shape:
        raise ValueError(f"shape mismatch: {prediction.shape} vs {rating.shape}")
    if rating.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((prediction - rating) ** 2)))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Stable order on (-score, index) within the k chosen.
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall_ndcg_at_k(top: np.ndarray, relevant: list[np.ndarray], k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@K and NDCG@K, given each user's ranked items and relevant item set."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall = np.full(len(relevant), np.nan)
    ndcg = np.full(len(relevant), np.nan)
    for row, rel in enumerate(relevant):  # one iteration per user, vectorised inside
        if rel.size == 0:
            continue
        hits = np.isin(top[row, :k], rel)
        n_ideal = min(k, rel.size)
        recall[row] = hits.sum() / n_ideal
        ndcg[row] = (hits * discounts[: hits.size]).sum() / discounts[:n_ideal].sum()
    return recall, ndcg


@dataclass(frozen=True)
class RankingResult:
    recall: float
    ndcg: float
    n_users: int
    n_relevant: int


def group_by_row(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> list[np.ndarray]:
    """cols split per row index 0..n_rows-1 (one sort, no per-element loop)."""
    if n_rows == 0:  # np.split would still return one (empty) piece
        return []
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n_rows)
    return np.split(cols[order], np.cumsum(counts)[:-1])


def query_sets(users: np.ndarray, seen: tuple[np.ndarray, np.ndarray],
               held_out: tuple[np.ndarray, np.ndarray, np.ndarray]
               ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(sorted unique users, each one's relevant items, each one's seen items): the ranking
    queries behind Recall@K / NDCG@K, with the definitions at the top of this module."""
    users = np.unique(np.asarray(users))
    n = len(users)
    lookup = np.full(int(users.max()) + 1 if n else 1, -1, np.int64)
    lookup[users] = np.arange(n)
    seen_u, seen_i = _restrict(lookup, *seen)
    ho_u, ho_i, ho_r = held_out
    keep = (ho_r >= RELEVANT_MIN_RATING) & (ho_u <= lookup.size - 1)
    ho_u, ho_i = ho_u[keep], ho_i[keep]
    ho_row = lookup[ho_u]
    ok = ho_row >= 0
    ho_row, ho_i = ho_row[ok], ho_i[ok]
    # Not relevant when the user had already rated that movie before the held-out period.
    if seen_u.size and ho_row.size:
        n_items_key = int(max(seen_i.max(initial=0), ho_i.max(initial=0))) + 1
        fresh = ~np.isin(ho_row * n_items_key + ho_i, seen_u * n_items_key + seen_i)
        ho_row, ho_i = ho_row[fresh], ho_i[fresh]
    return users, [np.unique(r) for r in group_by_row(ho_row, ho_i, n)], group_by_row(seen_u, seen_i, n)


def ranking_metrics(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    seen: tuple[np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int = K,
    chunk: int = 512,
) -> RankingResult:
    """Recall@K / NDCG@K over `users` (row indices into score_fn's output).

    `score_fn(user_rows) -> (len(user_rows), n_items)` scores; `seen` = (user_row, item) pairs rated
    before the held-out period (masked); `held_out` = (user_row, item, rating) held-out events.
    """
    users, relevant, seen_by_row = query_sets(users, seen, held_out)
    n = len(users)
    recalls, ndcgs = [], []
    for start in range(0, n, chunk):
        rows = users[start : start + chunk]
        scores = np.array(score_fn(rows), dtype=np.float64, copy=True)
        for j in range(len(rows)):  # mask per user: one fancy-index assignment each
            scores[j, seen_by_row[start + j]] = -np.inf
        r, g = recall_ndcg_at_k(top_k(scores, k), relevant[start : start + chunk], k)
        recalls.append(r)
        ndcgs.append(g)
    recall, ndcg = (np.concatenate(x) if x else np.array([]) for x in (recalls, ndcgs))
    valid = ~np.isnan(recall)
    return RankingResult(
        recall=float(recall[valid].mean()) if valid.any() else float("nan"),
        ndcg=float(ndcg[valid].mean()) if valid.any() else float("nan"),
        n_users=int(valid.sum()),
        n_relevant=int(sum(r.size for r in relevant)),
    )


def _restrict(lookup: np.ndarray, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) pairs for users present in `lookup`, with user ids mapped to rows."""
    inside = u < lookup.size
    u, i = u[inside], i[inside]
    row = lookup[u]
    ok = row >= 0
    return row[ok], i[ok]
