from __future__ import annotations

import math

import numpy as np
import pytest

from movierec_assets.ml.baselines import BiasModel, MatrixFactorization, Popularity
from movierec_assets.ml.metrics import ranking_metrics, recall_ndcg_at_k, rmse, top_k


def test_rmse_exact() -> None:
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(math.sqrt(2.5))


def test_top_k_order_and_ties() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2]]


def test_recall_ndcg_hand_made() -> None:
    # Ranked items 0..9; relevant {1, 4, 20}: hits at ranks 2 and 5, one relevant item missed.
    top = np.arange(10)[None, :]
    recall, ndcg = recall_ndcg_at_k(top, [np.array([1, 4, 20])], k=10)
    assert recall[0] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg[0] == pytest.approx(dcg / idcg)


def test_ranking_metrics_masks_seen_and_ignores_rerated() -> None:
    # 2 users x 12 items; scores rank item j at position j for both users.
    scores = np.tile(-np.arange(12, dtype=float), (2, 1))
    seen = (np.array([0, 0]), np.array([0, 1]))  # user 0 saw items 0 and 1 -> masked
    held = (np.array([0, 0, 0, 1, 1]), np.array([2, 1, 11, 5, 3]), np.array([5.0, 5.0, 4.0, 3.5, 4.0]))
    res = ranking_metrics(lambda rows: scores[rows], np.array([0, 1]), seen, held, k=10)
    # user 0: relevant {2, 11} (item 1 was seen before: not relevant); top10 = items 2..11 -> both hit.
    # user 1: relevant {3} (3.5 is below 4); top10 = 0..9 -> hit at rank 4.
    assert res.n_users == 2 and res.n_relevant == 3
    assert res.recall == pytest.approx(1.0)
    u0 = (1 / math.log2(2) + 1 / math.log2(11)) / (1 / math.log2(2) + 1 / math.log2(3))
    u1 = 1 / math.log2(5)
    assert res.ndcg == pytest.approx((u0 + u1) / 2)


def test_baselines_recover_planted_biases() -> None:
    rng = np.random.default_rng(0)
    n_u, n_m = 300, 80
    bu, bm = rng.normal(0, 0.5, n_u), rng.normal(0, 0.7, n_m)
    pu, qm = rng.normal(0, 0.6, (n_u, 2)), rng.normal(0, 0.6, (n_m, 2))
    u = rng.integers(0, n_u, 20000)
    m = rng.integers(0, n_m, 20000)
    r = 3.5 + bu[u] + bm[m] + (pu[u] * qm[m]).sum(1) + rng.normal(0, 0.1, len(u))
    bias = BiasModel(reg_user=1, reg_movie=1).fit(u, m, r, n_u, n_m)
    mf = MatrixFactorization(rank=4, reg=0.01).fit(u, m, r, n_u, n_m)
    assert np.corrcoef(bias.b_movie, bm)[0, 1] > 0.95
    rb = rmse(bias.predict(u, m), np.clip(r, 0.5, 5))
    rm = rmse(mf.predict(u, m), np.clip(r, 0.5, 5))
    assert rm < 0.6 * rb
    # Unknown users fall back to the biases: finite predictions.
    assert np.isfinite(mf.predict(np.array([10_000]), np.array([0]))).all()
    pop = Popularity().fit(u, m, r, n_m)
    assert pop.score(np.array([0]), n_m).shape == (1, n_m)


def test_group_by_row_with_no_rows_is_empty() -> None:
    from movierec_assets.ml.metrics import group_by_row

    assert group_by_row(np.zeros(0, np.int64), np.zeros(0, np.int64), 0) == []
    assert [g.tolist() for g in group_by_row(np.array([1, 0, 1]), np.array([7, 8, 9]), 3)] == [[8], [7, 9], []]
