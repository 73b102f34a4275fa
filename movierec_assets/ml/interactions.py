"""Implicit-feedback matrices for the ranking baselines (EASE, item-kNN, iALS).

Index spaces are the evaluation's global dense indices: rows = users, columns = movies. A rating
matrix holds the star values (0 = unrated); an interaction matrix holds what a baseline learns
from, chosen by a *scheme* (a tuned hyperparameter):

- ``all``: every rated movie counts as one interaction (value 1);
- ``liked``: only ratings >= 4 count (value 1); lower ratings are dropped.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SCHEMES: tuple[str, ...] = ("all", "liked")
LIKED_MIN_RATING = 4.0
UNSCORED = -1e6  # score of movies outside a baseline's item set (ranked after every scored movie)
TIE_BREAK = 1e-9  # times popularity in [0, 1): equal scores go to the more popular movie


def rating_matrix(users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
                  shape: tuple[int, int]) -> sp.csr_matrix:
    """users x movies CSR of star ratings; on a repeated (user, movie) pair the last one wins."""
    users, movies = np.asarray(users, np.int64), np.asarray(movies, np.int64)
    key = users * shape[1] + movies
    _, last_rev = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - last_rev
    values = np.asarray(ratings, np.float32)[keep]
    return sp.csr_matrix((values, (users[keep], movies[keep])), shape=shape, dtype=np.float32)


def interactions(ratings: sp.csr_matrix, scheme: str) -> sp.csr_matrix:
    """The 0/1 interaction matrix of `scheme` (see the module docstring), float32 CSR."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown interaction scheme {scheme!r} (expected one of {SCHEMES})")
    x = ratings.tocsr(copy=True).astype(np.float32)
    if scheme == "liked":
        x.data = (x.data >= LIKED_MIN_RATING).astype(np.float32)
        x.eliminate_zeros()
    else:
        x.data = np.ones_like(x.data)
    return x


def popularity(x: sp.csr_matrix) -> np.ndarray:
    """Interactions per movie scaled into [0, 1): the fallback ranking and the tie-break."""
    counts = np.asarray(x.getnnz(axis=0), np.float64)
    return counts / (counts.max(initial=0.0) + 1.0)


def item_set(x: sp.csr_matrix, max_items: int) -> np.ndarray:
    """Columns with at least one interaction, capped to the `max_items` most interacted (sorted).

    Dropping columns without interactions is exact for EASE and item-kNN (their rows and columns
    of the item-item matrix are zero); the cap is an approximation for very large catalogues.
    """
    counts = x.getnnz(axis=0)
    active = np.flatnonzero(counts > 0)
    if len(active) > max_items:
        order = np.lexsort((active, -counts[active]))  # most interacted first, ties by index
        active = np.sort(active[order[:max_items]])
    return active


def with_fallback(scores: np.ndarray, x_users: sp.csr_matrix, pop: np.ndarray) -> np.ndarray:
    """Users with no interaction get the popularity ranking; ties go to the more popular movie."""
    empty = np.diff(x_users.indptr) == 0
    scores[empty] = pop
    scores += TIE_BREAK * pop
    return scores
