"""Protocol A and B plumbing of the ranking baselines, with the two-tower replaced by a stub
(the model has its own tests; here only what each baseline is given matters)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from movierec_assets.ml import evaluate
from movierec_assets.ml.scoreboard import History
from movierec_assets_tests.ml.tiny_movielens import write_tiny_movielens

RANKERS = {"itemknn", "ease", "ials"}


@pytest.fixture()
def stub_model(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(evaluate, "fit_model", lambda *a, **k: object())
    monkeypatch.setattr(evaluate, "rating_map", lambda model: (1.0, 3.5))

    def embeddings(model: Any, fm: Any, *a: Any, **k: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros((len(fm.user_ids), 2)), np.zeros((len(fm.movie_ids), 2)), np.zeros(len(fm.movie_ids))

    monkeypatch.setattr(evaluate, "embeddings", embeddings)


def test_protocol_a_scores_each_day_from_the_ratings_before_it(tmp_path: Path, stub_model: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec_assets.movielens.split import compute_split

    ds = evaluate.load_dataset(write_tiny_movielens(tmp_path / "tiny"))
    days: list[Any] = []
    priors: list[pl.DataFrame] = []
    real_days, real_build = evaluate._eval_days, History.build
    monkeypatch.setattr(evaluate, "_eval_days", lambda *a: days.extend(real_days(*a)) or list(days))
    monkeypatch.setattr(History, "build", classmethod(lambda cls, prior, u, m: priors.append(prior)
                                                      or real_build.__func__(cls, prior, u, m)))
    rows = evaluate.protocol_a(ds, compute_split(ds.ratings.lazy()).cutoff_day, evaluate.EvalConfig())
    assert days and len(priors) == len(days)
    for day, prior in zip(days, priors, strict=True):
        start = datetime.combine(day, datetime.min.time(), UTC)
        today = ds.ratings.filter(pl.col("rated_at").dt.date() == day)
        expected = ds.ratings.filter(pl.col("rated_at") < start).join(today.select("user_id").unique(),
                                                                       on="user_id", how="semi")
        assert prior["rated_at"].max() < start  # a user's later ratings never reach their score
        assert prior.sort("user_id", "movie_id").equals(expected.sort("user_id", "movie_id"))
    table = pl.DataFrame(rows)
    ranked = table.filter(pl.col("method").is_in(list(RANKERS)))
    assert set(ranked["method"]) == RANKERS and set(ranked["group"]) <= {"warm", "new"}
    assert ranked["rmse"].is_nan().all() and (ranked["n_events"] == 0).all()
    same = table.filter((pl.col("group") == "warm") & (pl.col("method") != "global_mean"))
    assert same["n_ranked_users"].n_unique() == 1  # every method on the same queries
    assert all(ranked["params"].str.contains('"scheme"'))


def test_protocol_b_ranks_from_the_training_ratings(tmp_path: Path, stub_model: None) -> None:
    ds = evaluate.load_dataset(write_tiny_movielens(tmp_path / "tiny"))
    table = pl.DataFrame(evaluate.protocol_b(ds, evaluate.EvalConfig()))
    got = {r["method"]: r for r in table.to_dicts()}
    assert RANKERS | {"two_tower", "bias", "popularity", "matrix_factorization"} <= set(got)
    assert len({got[m]["n_ranked_users"] for m in RANKERS | {"popularity", "two_tower"}}) == 1
    for m in RANKERS:
        assert 0.0 <= got[m]["recall_at_10"] <= 1.0 and got[m]["params"] is not None
