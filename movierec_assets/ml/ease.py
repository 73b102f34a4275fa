"""EASE (Steck 2019): a closed-form item-item linear model for implicit feedback.

    P = (X^T X + lambda I)^-1,   B = I - P diag(1 / diag(P)),   diag(B) = 0,   scores = X_u B

Fitted once per training run: one regularised Gram-matrix inverse (Cholesky) over the item set
(movies with at least one interaction, capped to the most interacted `max_items`). A user is scored
from *their own* interactions, so new ratings are used at once, with no refit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from movierec_assets.ml.interactions import UNSCORED, item_set

DEFAULT_MAX_ITEMS = 20_000


def gram(x: sp.csr_matrix) -> np.ndarray:
    """X^T X as a dense float64 matrix."""
    return np.asarray((x.T @ x).toarray(), np.float64)


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix by Cholesky (LAPACK potrf + potri)."""
    factor, info = lapack.dpotrf(a, lower=True, overwrite_a=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (info={info})")
    inv, info = lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (info={info})")
    lower = np.tril(inv)
    return lower + np.tril(lower, -1).T


def ease_weights(g: np.ndarray, lam: float) -> np.ndarray:
    """B from the Gram matrix X^T X (not modified) and lambda, as float32."""
    reg = g.copy()
    reg[np.diag_indices_from(reg)] += lam
    p = spd_inverse(reg)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


@dataclass
class EaseModel:
    items: np.ndarray  # global movie columns covered by `weights`
    weights: np.ndarray  # len(items) x len(items)
    n_movies: int

    def score(self, x_users: sp.csr_matrix) -> np.ndarray:
        """(n_users, n_movies) scores of users given as rows of an interaction matrix."""
        out = np.full((x_users.shape[0], self.n_movies), UNSCORED, np.float64)
        out[:, self.items] = np.asarray(x_users[:, self.items] @ self.weights, np.float64)
        return out


def fit_ease(x: sp.csr_matrix, lam: float, max_items: int = DEFAULT_MAX_ITEMS) -> EaseModel:
    items = item_set(x, max_items)
    return EaseModel(items, ease_weights(gram(x[:, items]), lam), x.shape[1])
