"""iALS (Hu, Koren and Volinsky 2008) with the `implicit` library, and user fold-in.

Confidence follows `implicit` 0.7: c_ui = alpha * x_ui on interactions, 1 elsewhere, with
preference 1 on interactions and 0 elsewhere. Item factors are fitted once per training run; any
user is then *folded in* from their own interactions by one exact least-squares solve against the
fixed item factors Y:

    x_u = (Y^T Y + Y^T (C_u - I) Y + reg I)^-1  Y^T C_u p_u
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


@dataclass
class IALSModel:
    model: object  # implicit.cpu.als.AlternatingLeastSquares, with fixed item factors

    @property
    def item_factors(self) -> np.ndarray:
        return np.asarray(self.model.item_factors)  # type: ignore[attr-defined]

    def fold_in(self, x_users: sp.csr_matrix) -> np.ndarray:
        """User factors from the users' interactions (one least-squares solve each)."""
        x_users = sp.csr_matrix(x_users, dtype=np.float32)
        if x_users.shape[0] == 0:
            return np.zeros((0, self.item_factors.shape[1]), np.float32)
        with threadpool_limits(1, "blas"):
            return np.asarray(self.model.recalculate_user(np.arange(x_users.shape[0]), x_users))  # type: ignore[attr-defined]

    def score(self, x_users: sp.csr_matrix) -> np.ndarray:
        return np.asarray(self.fold_in(x_users) @ self.item_factors.T, np.float64)


def fit_ials(x: sp.csr_matrix, factors: int, regularization: float, alpha: float,
             iterations: int = 15, seed: int = 0) -> IALSModel:
    """Fit iALS on interactions `x` (users x movies); only the item factors are kept in use."""
    from implicit.cpu.als import AlternatingLeastSquares  # implicit: only when iALS is fitted

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # implicit's BLAS-threads advice: limited above
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed)
        model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
    model.num_threads = 1  # fold-ins are small batches (a day's users): one thread, no start-up cost
    return IALSModel(model)
