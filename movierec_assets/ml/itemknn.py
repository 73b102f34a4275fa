"""Item-kNN with cosine similarity (Sarwar et al. 2001; the tuned form of Ferrari Dacrema et al.).

    sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink)   (x_i = movie i's column of interactions)

Each movie j keeps its `k` most similar movies i (sim(j, j) = 0); a user's score of j is
sum_i x_ui sim(i, j) over those neighbours, computed from the user's own interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from movierec_assets.ml.interactions import item_set

DEFAULT_MAX_ITEMS = 20_000


def cosine_similarity(x: sp.csr_matrix, shrink: float = 0.0) -> np.ndarray:
    """Dense item x item cosine similarity of the columns of `x`, shrunk; zero diagonal."""
    g = np.asarray((x.T @ x).toarray(), np.float32)
    norms = np.sqrt(np.diag(g)).astype(np.float32)
    sim = g / (norms[:, None] * norms[None, :] + np.float32(shrink) + np.float32(1e-12))
    sim[np.diag_indices_from(sim)] = 0.0
    return sim


def keep_top_k(sim: np.ndarray, k: int) -> sp.csr_matrix:
    """Each column j keeps its k largest entries (the neighbours i of j); the rest become 0."""
    n = sim.shape[0]
    k = min(k, n - 1) if n > 1 else 0
    if k <= 0:
        return sp.csr_matrix(sim.shape, dtype=np.float32)
    cols = sim.T  # row j of sim.T = column j of sim
    part = np.argpartition(-cols, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(cols, part, axis=1)
    rows = part.ravel()
    targets = np.repeat(np.arange(n), k)
    keep = values.ravel() > 0
    return sp.csr_matrix((values.ravel()[keep], (rows[keep], targets[keep])), shape=sim.shape, dtype=np.float32)


@dataclass
class ItemKNNModel:
    items: np.ndarray  # global movie columns covered by `weights`
    weights: sp.csr_matrix  # len(items) x len(items): weights[i, j] = sim(i, j) for i in N_k(j)
    n_movies: int

    def score(self, x_users: sp.csr_matrix) -> np.ndarray:
        out = np.zeros((x_users.shape[0], self.n_movies), np.float64)
        out[:, self.items] = (x_users[:, self.items] @ self.weights).toarray()
        return out


def fit_itemknn(x: sp.csr_matrix, k: int, shrink: float = 0.0, max_items: int = DEFAULT_MAX_ITEMS) -> ItemKNNModel:
    items = item_set(x, max_items)
    return ItemKNNModel(items, keep_top_k(cosine_similarity(x[:, items], shrink), k), x.shape[1])
