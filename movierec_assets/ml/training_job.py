"""What `trained_model` does, outside Dagster: read, train, evaluate on the holdout, save, register.

Imports TensorFlow (through keras); only the asset body imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from movierec_assets.config import paths
from movierec_assets.db.bulk import read_polars
from movierec_assets.ml import feature_io, registry
from movierec_assets.ml.config import JobConfig
from movierec_assets.ml.evaluate import embeddings
from movierec_assets.ml.pipeline import (
    FeatureMatrices,
    RatingArrays,
    arrays_from_frame,
    count_ratings,
    make_streaming_dataset,
    needs_streaming,
    read_ratings,
)
from movierec_assets.ml.scoreboard import MODEL, Baselines, Scoreboard, model_methods
from movierec_assets.ml.train import TrainResult, train
from movierec_assets.ml.two_tower import rating_map

__all__ = ["JobConfig", "JobResult", "run"]


@dataclass
class JobResult:
    version: registry.ModelVersion
    train: TrainResult
    metrics: dict[str, Any]
    holdout_rows: list[dict[str, object]]


def run_key(cfg: JobConfig, n_ratings: int, data_end: datetime | None, feature_version: str) -> str:
    """Stable across retries of the same training (same data, same config): a crashed run's
    retry finds its checkpoints under models/runs/<key>/."""
    blob = json.dumps([asdict(cfg.train), n_ratings, str(data_end), feature_version], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ratings_frame(data: RatingArrays, fm: FeatureMatrices) -> Any:
    """Index arrays back to (user_id, movie_id, rating, rated_at) rows: the users' histories."""
    return pl.DataFrame({"user_id": fm.user_ids[data.user_idx], "movie_id": fm.movie_ids[data.movie_idx],
                         "rating": data.rating, "rated_at": data.rated_at})


def _model_method(model: Any, fm: FeatureMatrices, tr: RatingArrays) -> tuple[Any, Any]:
    """The model's predict/score over feature rows; history-aware models pool the training ratings."""
    u_emb, m_emb, m_bias = embeddings(model, fm, prior=_ratings_frame(tr, fm))
    return model_methods(u_emb, np.arange(len(fm.user_ids)), m_emb, *rating_map(model), m_bias)


def _board(methods: dict[str, Any], tr: RatingArrays, va: RatingArrays, rank_users_cap: int, seed: int) -> Scoreboard:
    """Every method's RMSE on all validation events, and top-N on a fixed sample of its users."""
    events = (va.user_idx, va.movie_idx, va.rating.astype(np.float64))
    board = Scoreboard()
    for name, (predict, _) in methods.items():
        board.add("holdout", name, predict, None, events, (tr.user_idx, tr.movie_idx))
    users = np.unique(va.user_idx)
    if len(users) > rank_users_cap:  # ranking every user at 20M scale is costly: a fixed sample
        users = np.sort(np.random.default_rng(seed).choice(users, rank_users_cap, replace=False))
    sel = np.isin(va.user_idx, users)
    ranked = (va.user_idx[sel], va.movie_idx[sel], va.rating[sel].astype(np.float64))
    for name, (_, score) in methods.items():
        board.add("holdout", name, None, score, ranked, (tr.user_idx, tr.movie_idx))
    return board


def holdout_report(model: Any, fm: FeatureMatrices, tr: RatingArrays, va: RatingArrays,
                   rank_users_cap: int, seed: int) -> tuple[list[dict[str, object]], dict[str, float]]:
    """Model and baselines on the same validation events (indices are feature rows)."""
    n_u, n_m = len(fm.user_ids), len(fm.movie_ids)
    base = Baselines.fit(tr.user_idx, tr.movie_idx, tr.rating, n_u, n_m)
    methods = {MODEL: _model_method(model, fm, tr), **base.methods(n_m)}
    rows = _board(methods, tr, va, rank_users_cap, seed).rows(protocol="holdout")
    flat = {f"{r['method']}_{k}": r[k] for r in rows for k in ("rmse", "recall_at_10", "ndcg_at_10")}
    return rows, flat


def champion_holdout(champion: registry.ModelVersion | None, users: Any, movies: Any, tr: RatingArrays,
                     va: RatingArrays, cfg: JobConfig) -> dict[str, float] | None:
    """The champion's RMSE and NDCG@10 on the candidate's holdout events (the same ranked users),
    with the champion's own scaling stats. The feature frames are the candidate's, so the feature
    rows (and so the event indices) are the same."""
    if champion is None:
        return None
    try:
        old = registry.load_model(champion.path)
        cfm = feature_io.matrices(users, movies, feature_io.load_stats(Path(champion.path)))
        if cfm.user_matrix.shape[1] != old.n_user_features or cfm.movie_matrix.shape[1] != old.n_movie_features:
            return None
    except (OSError, ValueError, KeyError):
        return None
    rows = _board({MODEL: _model_method(old, cfm, tr)}, tr, va, cfg.rank_users_cap, cfg.train.seed).rows()
    return {k: float(rows[0][k]) for k in ("rmse", "ndcg_at_10", "recall_at_10")}


def _train_data(url: str, fm: FeatureMatrices, cfg: JobConfig, logger: Any
                ) -> tuple[RatingArrays, RatingArrays, Any, tuple[datetime | None, datetime | None]]:
    """(train, validation, streaming dataset or None, data range). Validation = the newest
    `val_fraction` of ratings by time. Over the memory budget, only validation is held in memory
    and training batches stream from PostgreSQL."""
    n_total = count_ratings(url)
    if not needs_streaming(n_total, cfg.memory_budget_bytes):
        arrays = arrays_from_frame(read_ratings(url), fm)
        if arrays.dropped:
            logger.info(f"{arrays.dropped:,} ratings without a feature row (user or movie) were skipped")
        tr, va = arrays.time_split(cfg.train.val_fraction)
        span = (_ts(arrays.rated_at[0]), _ts(arrays.rated_at[-1])) if len(arrays) else (None, None)
        return tr, va, None, span
    logger.info(f"{n_total:,} ratings exceed the memory budget: streaming training batches from PostgreSQL")
    bounds = read_polars(url, STREAM_BOUNDS_SQL, [1.0 - cfg.train.val_fraction])
    val_start, first, last = bounds.row(0)
    va = arrays_from_frame(read_polars(url, RATINGS_SINCE_SQL, [val_start]), fm)
    stream = make_streaming_dataset(url, fm, cfg.train.batch_size, before=val_start, seed=cfg.train.seed)
    return va.take(slice(0, 0)), va, stream, (first, last)


STREAM_BOUNDS_SQL = (
    "SELECT percentile_disc($1) WITHIN GROUP (ORDER BY rated_at) AS val_start,"
    " min(rated_at) AS first, max(rated_at) AS last FROM movielens.ratings"
)
RATINGS_SINCE_SQL = "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings WHERE rated_at >= $1"


def run(url: str, cfg: JobConfig, logger: Any) -> JobResult:
    users, movies, stats = feature_io.load_feature_tables(url)
    fm = feature_io.matrices(users, movies, stats)
    tr, va, stream, (data_start, data_end) = _train_data(url, fm, cfg, logger)
    feature_version = str(stats["feature_set_version"][0]) if stats.height else "unknown"
    run_dir = paths().models / "runs" / run_key(cfg, len(tr) + len(va), data_end, feature_version)
    champion = registry.current_champion(url)
    warm = champion.model_file if (cfg.warm_start and champion is not None) else None
    result = train(tr, va, fm, run_dir, cfg.train, logger, warm, train_dataset=stream)
    rows, flat = ([], {}) if stream is not None else holdout_report(
        result.model, fm, tr, va, cfg.rank_users_cap, cfg.train.seed)  # streaming: no baselines in memory
    theirs = champion_holdout(champion, users, movies, tr, va, cfg) if stream is None else None
    metrics = {
        "holdout_rmse": result.val_rmse,
        "holdout_events": len(va),
        "train_events": result.n_train,
        "epochs": result.epochs_run,
        "examples_per_second": result.examples_per_second,
        "final_loss": result.final_loss,
        "final_val_loss": result.final_val_loss,
        "feature_set_version": feature_version,
        "holdout_ndcg_at_10": flat.get(f"{MODEL}_ndcg_at_10"),
        "gate_tolerance": cfg.gate_tolerance,
        "ndcg_tolerance": cfg.ndcg_tolerance,
        "config": asdict(cfg.train),
        "ranking_prior": result.extra.get("ranking_prior"),
        "champion_version": champion.version if champion else None,
        "champion_holdout_rmse": (theirs or {}).get("rmse"),
        "champion_holdout_ndcg_at_10": (theirs or {}).get("ndcg_at_10"),
        **flat,
    }
    record = publish(url, result.model, stats, metrics, result.history, data_start, data_end)
    shutil.rmtree(run_dir, ignore_errors=True)  # finished: the next training starts fresh
    return JobResult(record, result, metrics, rows)


def publish(url: str, model: Any, stats: Any, metrics: dict[str, Any], history: dict[str, Any] | None = None,
            data_start: datetime | None = None, data_end: datetime | None = None) -> registry.ModelVersion:
    """A new version: its folder (the model, the scaling stats it was trained with, its training
    history) written and renamed into place, then registered as a candidate. What `trained_model`
    does; `promotion.decide` (the `champion_gate` check) then judges it."""
    version = registry.new_version()
    vdir = publish_version_dir(registry.version_dir(version), model, stats, history or {})
    return registry.register_candidate(url, version, vdir, metrics, data_start, data_end)


def publish_version_dir(vdir: Path, model: Any, stats: Any, history: dict[str, Any]) -> Path:
    """Write the model, its scaling stats and history to a hidden folder, then rename it into place:
    a crash leaves either a complete version folder or a `.tmp-` one, removed by a later run once
    it is a day old (a younger one may belong to a training running right now)."""
    vdir.parent.mkdir(parents=True, exist_ok=True)
    for stale in vdir.parent.glob(".tmp-*"):
        if time.time() - stale.stat().st_mtime > 86_400:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = vdir.with_name(f".tmp-{vdir.name}")
    tmp.mkdir()
    model.save(tmp / registry.MODEL_FILE)
    feature_io.save_stats(stats, tmp)
    (tmp / "history.json").write_text(json.dumps(history))
    os.rename(tmp, vdir)  # version names are unique (timestamp + random suffix)
    return vdir


def _ts(us: int | np.integer) -> datetime:
    return datetime.fromtimestamp(int(us) / 1e6, UTC)
