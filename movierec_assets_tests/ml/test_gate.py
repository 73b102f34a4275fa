"""The champion gate's decision on RMSE and NDCG@10 (pure function: no database, no TensorFlow)."""

from __future__ import annotations

from datetime import UTC, datetime

from movierec_assets.ml import registry


def _version(name: str, metrics: dict) -> registry.ModelVersion:
    return registry.ModelVersion(name, datetime(2026, 1, 1, tzinfo=UTC), metrics, f"/models/{name}", None, None,
                                 "candidate", None)


CHAMPION = _version("v1", {"holdout_rmse": 0.90, "holdout_ndcg_at_10": 0.10})


def _candidate(rmse: float, ndcg: float | None) -> registry.ModelVersion:
    return _version("v2", {"holdout_rmse": rmse, "holdout_ndcg_at_10": ndcg, "champion_version": "v1",
                           "champion_holdout_rmse": 0.90, "champion_holdout_ndcg_at_10": 0.10})


def test_better_rmse_but_worse_ndcg_is_rejected_with_the_reason() -> None:
    decision = registry.gate(_candidate(0.85, 0.08), CHAMPION, 0.01, ndcg_tolerance=0.02)
    assert not decision.promote
    assert "holdout_rmse 0.8500 <= champion 0.9000" in decision.reason
    assert "holdout_ndcg_at_10 0.0800 worse than champion v1 0.1000" in decision.reason


def test_both_within_tolerance_is_promoted() -> None:
    decision = registry.gate(_candidate(0.905, 0.099), CHAMPION, 0.01, ndcg_tolerance=0.02)
    assert decision.promote, decision.reason


def test_worse_rmse_better_ndcg_is_rejected() -> None:
    assert not registry.gate(_candidate(0.95, 0.2), CHAMPION, 0.01).promote


def test_missing_ndcg_falls_back_to_rmse_and_says_so() -> None:
    decision = registry.gate(_candidate(0.90, None), CHAMPION, 0.01)
    assert decision.promote and "no comparable value" in decision.reason
