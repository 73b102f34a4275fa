"""What `trained_model` does, outside Dagster: read, train, evaluate on the holdout, save, register.

Imports TensorFlow (through keras); only the asset body imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from movierec_assets.config import paths
from movierec_assets.db.bulk import read_polars
from movierec_assets.ml import feature_io, registry
from movierec_assets.ml.config import JobConfig, TrainConfig
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
from movierec_assets.ml.policy import ChampionInfo, choose_policy
from movierec_assets.ml.scoreboard import MODEL, Baselines, Scoreboard, model_methods
from movierec_assets.ml.train import TrainResult, train
from movierec_assets.ml.two_tower import rating_map

__all__ = ["JobConfig", "JobResult", "Plan", "plan", "run"]


@dataclass
class JobResult:
    version: registry.ModelVersion | None  # None: the policy trained nothing (the champion stays)
    train: TrainResult | None
    metrics: dict[str, Any]
    holdout_rows: list[dict[str, object]]
    plan: Plan


def run_key(cfg: TrainConfig, n_ratings: int, data_end: datetime | None, feature_version: str,
            lineage: str = "full") -> str:
    """Stable across retries of the same training (same data, same config, same policy and parent):
    a crashed run's retry finds its checkpoints under models/runs/<key>/."""
    blob = json.dumps([asdict(cfg), n_ratings, str(data_end), feature_version, lineage], sort_keys=True)
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
        span = (utc_from_us(arrays.rated_at[0]), utc_from_us(arrays.rated_at[-1])) if len(arrays) else (None, None)
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


NEW_RATINGS_SQL = "SELECT count(*) AS n FROM movielens.ratings WHERE rated_at > $1"
OLD_RATINGS_SQL = "SELECT count(*) AS n FROM movielens.ratings WHERE rated_at <= $1"
RATINGS_AFTER_SQL = "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings WHERE rated_at > $1"
# A Bernoulli sample of the older ratings, repeatable for a seed while the table is unchanged (a
# resumed run sees the same sample).
HISTORY_SAMPLE_SQL = (
    "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings"
    " TABLESAMPLE BERNOULLI ($1::float8) REPEATABLE ($2::float8) WHERE rated_at <= $3"
)


@dataclass(frozen=True)
class Plan:
    """What this run does: the policy `choose_policy` picked, why, and the champion it starts from."""

    policy: str  # none | warm | full
    reason: str
    requested: str
    new_ratings: int
    champion: registry.ModelVersion | None


def _count(url: str, sql: str, at: datetime) -> int:
    return int(read_polars(url, sql, [at])["n"][0])


def champion_info(url: str, champion: registry.ModelVersion | None) -> ChampionInfo | None:
    """The champion as `choose_policy` sees it; its last full model is the root of its lineage."""
    if champion is None:
        return None
    chain = registry.lineage(url, champion.version)
    root = chain[-1] if chain else champion
    return ChampionInfo(champion.version, champion.policy, dict(champion.metrics.get("config") or {}),
                        champion.metrics.get("feature_set_version"), root.created_at)


def plan(url: str, cfg: JobConfig, feature_version: str, now: datetime | None = None) -> Plan:
    champion = registry.current_champion(url)
    end = champion.data_end if champion is not None else None
    new = count_ratings(url) if end is None else _count(url, NEW_RATINGS_SQL, end)
    policy, reason = choose_policy(champion_info(url, champion), cfg.retrain_policy, now or datetime.now(UTC),
                                   asdict(cfg.train), feature_version, new)
    return Plan(policy, reason, cfg.retrain_policy, new, champion)


def _concat(a: RatingArrays, b: RatingArrays) -> RatingArrays:
    return RatingArrays(*(np.concatenate([getattr(a, k), getattr(b, k)])
                          for k in ("user_idx", "movie_idx", "rating", "rated_at")))


def _warm_data(url: str, fm: FeatureMatrices, cfg: JobConfig, champion: registry.ModelVersion
               ) -> tuple[RatingArrays, RatingArrays, dict[str, Any]]:
    """(train, holdout, what they hold) of a warm update of `champion`: the ratings after its
    data_end and a random sample of `warm_history_sample` older ratings per new one."""
    end = champion.data_end
    assert end is not None  # choose_policy warms only a champion with new ratings after its data_end
    new = arrays_from_frame(read_polars(url, RATINGS_AFTER_SQL, [end]), fm)
    n_old = _count(url, OLD_RATINGS_SQL, end)
    percent = min(100.0, 100.0 * cfg.warm_history_sample * len(new) / max(n_old, 1))
    old = arrays_from_frame(read_polars(url, HISTORY_SAMPLE_SQL, [percent, float(cfg.train.seed), end]), fm)
    # The gate judges a warm candidate on events neither model trained on: the holdout is the newest
    # val_fraction of the ratings after the champion's data_end (never fewer than one), so the
    # champion never saw them and the candidate trains only on older ones.
    n_val = min(len(new), max(1, round(len(new) * cfg.train.val_fraction)))
    va, tr = new.take(slice(len(new) - n_val, None)), _concat(old, new.take(slice(0, len(new) - n_val)))
    seen = {"parent": champion.version, "new_rows": len(new), "history_sample": len(old),
            "history_rows": n_old, "history_sample_per_new": cfg.warm_history_sample,
            "new_start": _iso(new.rated_at[0]) if len(new) else None,
            "new_end": _iso(new.rated_at[-1]) if len(new) else None}
    return tr, va, seen


def _trained_on(p: Plan, tr: RatingArrays, va: RatingArrays, result: TrainResult, span: tuple[Any, Any],
                warm: dict[str, Any]) -> dict[str, Any]:
    """The data a version saw, for ml.model_versions.trained_on."""
    return {"policy": p.policy, "requested": p.requested, "policy_reason": p.reason,
            "data_start": _iso(span[0]), "data_end": _iso(span[1]),
            "rows": result.n_train + len(va), "train_rows": result.n_train, "holdout_rows": len(va),
            "holdout_start": _iso(va.rated_at[0]) if len(va) else None, **warm}


def run(url: str, cfg: JobConfig, logger: Any, now: datetime | None = None) -> JobResult:
    """One `trained_model` run under `cfg.retrain_policy`: nothing (`none`), a warm update of the
    champion, or a full training; the new version is registered as a candidate with its lineage."""
    users, movies, stats = feature_io.load_feature_tables(url)
    fm = feature_io.matrices(users, movies, stats)
    feature_version = str(stats["feature_set_version"][0]) if stats.height else "unknown"
    p = plan(url, cfg, feature_version, now)
    logger.info(f"retrain policy {p.policy} (asked: {p.requested}): {p.reason}")
    champion = p.champion
    if p.policy == "none":
        return JobResult(None, None, {"new_ratings": p.new_ratings}, [], p)
    train_cfg, warm_file, warm = cfg.train, None, {}
    if p.policy == "warm" and champion is not None:
        tr, va, warm = _warm_data(url, fm, cfg, champion)
        stream, span = None, (champion.data_start, utc_from_us(va.rated_at[-1]))
        train_cfg = replace(cfg.train, epochs=cfg.warm_epochs, learning_rate=cfg.warm_learning_rate)
        warm_file = champion.model_file
    else:
        tr, va, stream, span = _train_data(url, fm, cfg, logger)
    lineage = f"{p.policy}:{champion.version if warm_file else ''}"
    run_dir = paths().models / "runs" / run_key(train_cfg, len(tr) + len(va), span[1], feature_version, lineage)
    result = train(tr, va, fm, run_dir, train_cfg, logger, warm_file, train_dataset=stream)
    if warm_file is not None and not result.extra.get("warm_started"):
        raise RuntimeError(f"the warm start from {champion.version if champion else None} did not happen")
    rows, flat = ([], {}) if stream is not None else holdout_report(
        result.model, fm, tr, va, cfg.rank_users_cap, cfg.train.seed)  # streaming: no baselines in memory
    theirs = champion_holdout(champion, users, movies, tr, va, cfg) if stream is None else None
    metrics = _metrics(cfg, train_cfg, result, va, feature_version, flat, champion, theirs) | {
        "policy": p.policy, "policy_reason": p.reason, "new_ratings": p.new_ratings}
    trained_on = _trained_on(p, tr, va, result, span, warm)
    record = publish(url, result.model, stats, metrics, result.history, span[0], span[1], policy=p.policy,
                     parent_version=champion.version if warm_file else None, trained_on=trained_on)
    shutil.rmtree(run_dir, ignore_errors=True)  # finished: the next training starts fresh
    return JobResult(record, result, metrics, rows, p)


def _metrics(cfg: JobConfig, train_cfg: TrainConfig, result: TrainResult, va: RatingArrays, feature_version: str,
             flat: dict[str, float], champion: registry.ModelVersion | None,
             theirs: dict[str, float] | None) -> dict[str, Any]:
    return {
        "holdout_rmse": result.val_rmse,
        "holdout_events": len(va),
        "train_events": result.n_train,
        "epochs": result.epochs_run,
        "examples_per_second": result.examples_per_second,
        "train_seconds": result.seconds,
        "final_loss": result.final_loss,
        "final_val_loss": result.final_val_loss,
        "feature_set_version": feature_version,
        "holdout_ndcg_at_10": flat.get(f"{MODEL}_ndcg_at_10"),
        "gate_tolerance": cfg.gate_tolerance,
        "ndcg_tolerance": cfg.ndcg_tolerance,
        # The run's own config (a warm update's epochs and learning rate are the warm ones); the
        # architecture fields are what the next run's policy compares with.
        "config": asdict(train_cfg),
        "ranking_prior": result.extra.get("ranking_prior"),
        "champion_version": champion.version if champion else None,
        "champion_holdout_rmse": (theirs or {}).get("rmse"),
        "champion_holdout_ndcg_at_10": (theirs or {}).get("ndcg_at_10"),
        **flat,
    }


def publish(url: str, model: Any, stats: Any, metrics: dict[str, Any], history: dict[str, Any] | None = None,
            data_start: datetime | None = None, data_end: datetime | None = None, *, policy: str = "full",
            parent_version: str | None = None, trained_on: dict[str, Any] | None = None) -> registry.ModelVersion:
    """A new version: its folder (the model, the scaling stats it was trained with, its training
    history) written and renamed into place, then registered as a candidate with its lineage. What
    `trained_model` does; `promotion.decide` (the `champion_gate` check) then judges it."""
    version = registry.new_version()
    vdir = publish_version_dir(registry.version_dir(version), model, stats, history or {})
    return registry.register_candidate(url, version, vdir, metrics, data_start, data_end, policy=policy,
                                       parent_version=parent_version, trained_on=trained_on)


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


def utc_from_us(us: int | np.integer) -> datetime:
    return datetime.fromtimestamp(int(us) / 1e6, UTC)


def _iso(value: Any) -> str | None:
    """A timestamp (microseconds or datetime) as ISO text, for jsonb."""
    if value is None:
        return None
    return (value if isinstance(value, datetime) else utc_from_us(value)).isoformat()
