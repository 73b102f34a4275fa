"""The ranking baselines (EASE, item-kNN, iALS): tuned on an inner validation split carved from the
training ratings only, then refitted on all training ratings.

Inner split (time-ordered, never the test events): mirrors the protocol. ``B``: the last
`fraction` of each training user's ratings (users with >= `min_user_ratings`); ``A``: the newest
`fraction` of the training ratings on the global timeline. Candidates are scored by NDCG@10 on
that split, from the validation users' earlier ratings, with the same metric code as the test.
Each method's whole grid is walked in order (or its first `max_candidates`), so the choice never
depends on how busy the machine is; the best candidate wins.
EASE's candidates are fitted on the `EASE_TUNE_MAX_ITEMS` most interacted movies of the inner split
(its cost is cubic in the item count); the final fit uses the full item set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from movierec_assets.ml import ease, ials, itemknn
from movierec_assets.ml.interactions import SCHEMES, interactions, popularity, with_fallback
from movierec_assets.ml.metrics import RELEVANT_MIN_RATING, ranking_metrics

RANKERS = ("itemknn", "ease", "ials")
# Grids, walked in this order (EASE's inverses are the expensive step: its most likely values first).
EASE_GRID = tuple((lam, scheme) for lam in (200.0, 500.0, 100.0, 1000.0) for scheme in SCHEMES)
KNN_K = (50, 100, 200)
KNN_SHRINK = (0.0, 20.0, 100.0)
IALS_GRID = tuple((f, reg, 1.0) for f in (32, 64) for reg in (3.0, 10.0, 30.0))  # (factors, reg, alpha)
EASE_TUNE_MAX_ITEMS = 5_000


class Scorer(Protocol):
    def score(self, x_users: sp.csr_matrix) -> np.ndarray: ...


@dataclass
class Ranker:
    """A fitted ranking baseline: scores users from their own ratings so far (no refit)."""

    name: str
    scheme: str
    model: Scorer
    pop: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def scorer(self, history: sp.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
        """score(user rows) from `history`, the evaluated users' star ratings so far (global CSR)."""
        x = interactions(history, self.scheme)

        def score(u: np.ndarray) -> np.ndarray:
            rows = x[np.asarray(u)]
            return with_fallback(self.model.score(rows), rows, self.pop)

        return score


@dataclass(frozen=True)
class InnerSplit:
    fit: sp.csr_matrix  # star ratings the candidates are fitted on (and score users from)
    held: tuple[np.ndarray, np.ndarray, np.ndarray]  # validation (user, movie, rating)
    users: np.ndarray  # validation users with a relevant rating and an earlier rating


def inner_split(u: np.ndarray, m: np.ndarray, r: np.ndarray, t: np.ndarray, shape: tuple[int, int],
                protocol: str, fraction: float = 0.2, min_user_ratings: int = 10) -> InnerSplit:
    """The inner validation split of training ratings (u, m, r, timestamp t); see the module doc."""
    from movierec_assets.ml.interactions import rating_matrix

    order = np.lexsort((m, u, t))
    u, m, r = u[order], m[order], r[order]
    if protocol == "A":
        held = np.arange(len(u)) >= int(round(len(u) * (1.0 - fraction)))
    else:
        by_user = np.argsort(u, kind="stable")  # grouped by user, time order kept within each
        counts = np.bincount(u, minlength=shape[0])
        starts = np.cumsum(counts) - counts
        rank = np.empty(len(u), np.int64)
        rank[by_user] = np.arange(len(u)) - starts[u[by_user]]  # 0 = the user's oldest rating
        n_u = counts[u]
        held = (n_u >= min_user_ratings) & (rank >= n_u - np.maximum(np.floor(n_u * fraction), 1))
    fit = rating_matrix(u[~held], m[~held], r[~held], shape)
    known = np.diff(fit.indptr) > 0
    users = np.unique(u[held & (r >= RELEVANT_MIN_RATING) & known[u]])
    return InnerSplit(fit, (u[held], m[held], r[held]), users)


def validation_ndcg(model: Scorer, scheme: str, split: InnerSplit) -> float:
    ranker = Ranker("candidate", scheme, model, popularity(interactions(split.fit, scheme)))
    seen = split.fit.nonzero()
    res = ranking_metrics(ranker.scorer(split.fit), split.users, seen, split.held)
    return res.ndcg if res.n_users else float("-inf")


def _ease_candidates(fit: sp.csr_matrix, max_items: int) -> Iterator[tuple[dict[str, Any], Scorer]]:
    grams: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # one Gram matrix per scheme
    for lam, scheme in EASE_GRID:
        if scheme not in grams:
            x = interactions(fit, scheme)
            items = ease.item_set(x, min(max_items, EASE_TUNE_MAX_ITEMS))
            grams[scheme] = (items, ease.gram(x[:, items]))
        items, g = grams[scheme]
        yield {"scheme": scheme, "lambda": lam}, ease.EaseModel(items, ease.ease_weights(g, lam), fit.shape[1])


def _knn_candidates(fit: sp.csr_matrix, max_items: int) -> Iterator[tuple[dict[str, Any], Scorer]]:
    for scheme in SCHEMES:
        x = interactions(fit, scheme)
        items = itemknn.item_set(x, max_items)
        for shrink in KNN_SHRINK:
            sim = itemknn.cosine_similarity(x[:, items], shrink)
            for k in KNN_K:
                yield ({"scheme": scheme, "k": k, "shrink": shrink},
                       itemknn.ItemKNNModel(items, itemknn.keep_top_k(sim, k), x.shape[1]))


def _ials_candidates(fit: sp.csr_matrix, max_items: int) -> Iterator[tuple[dict[str, Any], Scorer]]:
    for scheme in SCHEMES:
        x = interactions(fit, scheme)
        for factors, reg, alpha in IALS_GRID:
            params = {"factors": factors, "regularization": reg, "alpha": alpha}
            yield {"scheme": scheme, **params}, ials.fit_ials(x, **params)


CANDIDATES = {"ease": _ease_candidates, "itemknn": _knn_candidates, "ials": _ials_candidates}


def refit(name: str, ratings: sp.csr_matrix, params: dict[str, Any], max_items: int) -> Ranker:
    """Fit `name` with the chosen `params` on all training `ratings`."""
    x = interactions(ratings, params["scheme"])
    rest = {k: v for k, v in params.items() if k not in ("scheme", "val_ndcg_at_10", "candidates")}
    if name == "ease":
        model: Scorer = ease.fit_ease(x, rest["lambda"], max_items)
    elif name == "itemknn":
        model = itemknn.fit_itemknn(x, rest["k"], rest["shrink"], max_items)
    else:
        model = ials.fit_ials(x, **rest)
    return Ranker(name, params["scheme"], model, popularity(x), params)


def tune(name: str, split: InnerSplit, max_candidates: int, max_items: int) -> dict[str, Any]:
    """Walk `name`'s grid on the inner split (its first `max_candidates`; 0 = all of it); the best
    params, with their validation NDCG@10 and how many candidates were tried."""
    best, tried = None, 0
    for params, model in CANDIDATES[name](split.fit, max_items):
        ndcg = validation_ndcg(model, params["scheme"], split)
        tried += 1
        if best is None or ndcg > best[0]:
            best = (ndcg, params)
        if tried == max_candidates:
            break
    assert best is not None
    return {**best[1], "val_ndcg_at_10": round(float(best[0]), 4), "candidates": tried}


def fit_rankers(train: sp.csr_matrix, split: InnerSplit, max_candidates: int = 0,
                max_items: int = ease.DEFAULT_MAX_ITEMS, progress: Callable[[str], None] | None = None
                ) -> list[Ranker]:
    """Tune every ranking baseline on `split`, then refit each on all training ratings."""
    out = []
    for name in RANKERS:
        if progress:
            progress(name)
        out.append(refit(name, train, tune(name, split, max_candidates, max_items), max_items))
    return out
