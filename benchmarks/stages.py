"""The stages of `benchmarks.run`, each run in its own child process (`python -m benchmarks.run --stage`).

Every function takes the run context (data dir, batch size, ...) and returns a dict with at least
`rows` and `seconds` (the timed work, imports excluded). The parent adds the child's wall time, its
peak RSS (VmHWM of the child: exec starts a fresh address space, so nothing is inherited) and the
PostgreSQL server's RSS sampled while the child ran. Ceilings are their own stages, so their memory
never counts against the product stages.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

Context = dict[str, Any]
TOPN_USERS = 1000
TRAIN_WINDOW = 10  # batches per steady-state rate window (bench_train's)
CEILING_STEPS = 80


def generate(ctx: Context) -> dict[str, Any]:
    from movierec_assets.movielens.synth import write_synthetic

    started = time.perf_counter()
    p = write_synthetic(Path(ctx["data_dir"]), ctx["ratings"], ctx["seed"])
    seconds = time.perf_counter() - started
    csv_mb = (Path(ctx["data_dir"]) / "ratings.csv").stat().st_size / 2**20
    return {"rows": p.n_ratings, "seconds": seconds, "users": p.n_users, "movies": p.n_movies, "csv_mb": csv_mb}


def ingest(ctx: Context) -> dict[str, Any]:
    """The raw_movies + raw_ratings work: movie tables, then CSV -> validate -> load -> indexes -> swap."""
    from movierec_assets.ingest.history import load_history, load_movie_tables

    url, data = os.environ["MOVIEREC_DATABASE_URL"], Path(ctx["data_dir"])
    started = time.perf_counter()
    load_movie_tables(url, data)
    movies_s = time.perf_counter() - started
    h = load_history(url, data)
    return {
        "rows": h.rows, "seconds": time.perf_counter() - started, "movies_seconds": movies_s,
        "history_seconds": h.seconds, "parse_seconds": h.parse_seconds, "validate_seconds": h.validate_seconds,
        "load_copy_seconds": h.load.copy_seconds, "load_index_seconds": h.load.index_seconds,
        "load_seconds": h.load.seconds, "rejected": h.rejected, "lines": h.lines,
        "cutoff_day": h.manifest.cutoff_day.isoformat(), "last_day": h.manifest.last_day.isoformat(),
    }


def ingest_ceiling(ctx: Context) -> dict[str, Any]:
    """COPY of the same validated history rows (Arrow, in memory) into an UNLOGGED table, no indexes."""
    import polars as pl

    from benchmarks.bench_ingest import ceiling_copy
    from movierec_assets.ingest.validate import parse_ratings_file, validate_ratings
    from movierec_assets.movielens.source import read_movies
    from movierec_assets.movielens.split import split_manifest

    data = Path(ctx["data_dir"])
    manifest = split_manifest(data)
    parsed = parse_ratings_file(data / "ratings.csv")
    history = parsed.good.filter(pl.col("rated_at").dt.date() <= manifest.cutoff_day)
    good, _ = validate_ratings(history, read_movies(data)["movie_id"])
    arrow = good.select("user_id", "movie_id", "rating", "rated_at").to_arrow()
    del parsed, history
    runs = [ceiling_copy(os.environ["MOVIEREC_DATABASE_URL"], arrow) for _ in range(ctx.get("ceiling_runs", 1))]
    return {"rows": good.height, "seconds": statistics.median(runs), "runs": runs}


def partitions(ctx: Context) -> dict[str, Any]:
    """Replay 30 future days into a landing dir, then load each day with the real day loader
    (one `load_days` call per day, as one daily partition run does)."""
    from movierec_assets.ingest.days import load_days
    from movierec_assets.ingest.replay import replay
    from movierec_assets.movielens.split import split_manifest

    url, manifest = os.environ["MOVIEREC_DATABASE_URL"], split_manifest(Path(ctx["data_dir"]))
    landing = Path(os.environ["MOVIEREC_HOME"]) / "landing"
    started = time.perf_counter()
    days = replay(Path(ctx["data_dir"]), landing, days=ctx["days"], manifest=manifest)
    replay_s = time.perf_counter() - started
    loaded = rejected = 0
    per_day = []
    for day in days:
        t = time.perf_counter()
        report = load_days(url, [day], landing)
        per_day.append(time.perf_counter() - t)
        loaded, rejected = loaded + report.rows_loaded, rejected + report.rows_rejected
    return {
        "rows": loaded, "seconds": time.perf_counter() - started, "replay_seconds": replay_s,
        "load_seconds": sum(per_day), "day_load_median_seconds": statistics.median(per_day) if per_day else 0.0,
        "days": len(days), "rejected": rejected,
        "first_day": days[0].isoformat() if days else None,
        "last_day": (days[0] + timedelta(days=len(days) - 1)).isoformat() if days else None,
    }


def features(ctx: Context) -> dict[str, Any]:
    """user_features + movie_features (read, aggregate, finalize, swap in) and scaling_stats."""
    from movierec_assets.db import bulk
    from movierec_assets.features import compute_scaling_stats
    from movierec_assets.features.store import (
        compute_from_database,
        write_feature_tables,
        write_scaling_stats,
    )

    url = os.environ["MOVIEREC_DATABASE_URL"]
    started = time.perf_counter()
    frames = compute_from_database(url)
    computed = time.perf_counter()
    write_feature_tables(url, frames.users, frames.movies)
    write_scaling_stats(url, compute_scaling_stats(frames.users, frames.movies))
    seconds = time.perf_counter() - started
    rows = int(bulk.read_polars(url, "SELECT count(*) AS n FROM movielens.ratings")["n"][0])
    return {"rows": rows, "seconds": seconds, "compute_seconds": computed - started,
            "write_seconds": seconds - (computed - started), "phases": frames.timings.seconds,
            "users": frames.users.height, "movies": frames.movies.height}


def _train_config(ctx: Context):  # type: ignore[no-untyped-def]
    from movierec_assets.ml.train import TrainConfig

    return TrainConfig(epochs=1, batch_size=ctx["batch_size"])


def train(ctx: Context) -> dict[str, Any]:
    """One epoch of the real pipeline + model (train() of ml/train.py), then publish it through the
    champion gate (the first model of a fresh server is promoted)."""
    from benchmarks.bench_train import WindowRates
    from movierec_assets.ml import feature_io, promotion
    from movierec_assets.ml.pipeline import arrays_from_frame, read_ratings
    from movierec_assets.ml.train import train as fit
    from movierec_assets.ml.training_job import JobConfig, publish, utc_from_us

    url, cfg = os.environ["MOVIEREC_DATABASE_URL"], _train_config(ctx)
    started = time.perf_counter()
    users, movies, stats = feature_io.load_feature_tables(url)
    fm = feature_io.matrices(users, movies, stats)
    tr, va = arrays_from_frame(read_ratings(url), fm).time_split(cfg.val_fraction)
    prepared = time.perf_counter()
    rates = WindowRates(cfg.batch_size, TRAIN_WINDOW)
    run_dir = Path(os.environ["MOVIEREC_HOME"]) / "bench-train-run"
    result = fit(tr, va, fm, run_dir, cfg, extra_callbacks=[rates])
    fitted = time.perf_counter()
    # Published, registered and gated by the same functions as trained_model and champion_gate, with
    # what the retraining policy reads (feature set, config, data range), so `warm_update` can warm it.
    metrics = {"holdout_rmse": result.val_rmse, "feature_set_version": str(stats["feature_set_version"][0]),
               "config": asdict(cfg)}
    span = (utc_from_us(tr.rated_at[0]), utc_from_us(va.rated_at[-1]))
    version = publish(url, result.model, stats, metrics, result.history, *span).version
    decision = promotion.decide(url, version, JobConfig.gate_tolerance)
    steady = rates.rates[1:] or rates.rates
    return {
        "rows": len(tr), "seconds": time.perf_counter() - started, "prepare_seconds": prepared - started,
        "fit_seconds": fitted - prepared, "fit_with_validation_seconds": result.seconds,
        "steady_examples_per_s": statistics.median(steady) if steady else None, "val_rows": len(va),
        "val_rmse": result.val_rmse, "gate": decision.decision, "batch_size": cfg.batch_size, "users": len(fm.user_ids),
        "movies": len(fm.movie_ids), "user_features": fm.user_matrix.shape[1],
        "movie_features": fm.movie_matrix.shape[1], "movie_id_rows": result.model.n_movie_ids,
    }


def warm_update(ctx: Context) -> dict[str, Any]:
    """Issue 18's cost of keeping the model fresh: the next future day lands (`replay` +
    `load_days`), the features refresh, then one `trained_model` run under `retrain_policy=warm`
    (`training_job.run`, the asset's own function: the champion fine-tuned on the new day plus a
    sample of older ratings, its holdout report, the champion's score on the same events, publish),
    gated like every candidate. `seconds` is the warm run alone."""
    from movierec_assets.ingest.days import load_days
    from movierec_assets.ingest.replay import replay
    from movierec_assets.ml import promotion
    from movierec_assets.ml.training_job import JobConfig, run
    from movierec_assets.movielens.split import split_manifest

    url = os.environ["MOVIEREC_DATABASE_URL"]
    landing = Path(os.environ["MOVIEREC_HOME"]) / "landing"
    day = replay(Path(ctx["data_dir"]), landing, days=1, manifest=split_manifest(Path(ctx["data_dir"])))
    day_rows = load_days(url, day, landing).rows_loaded
    refresh = features(ctx)
    started = time.perf_counter()
    job = run(url, JobConfig(train=_train_config(ctx), retrain_policy="warm"), logging.getLogger("warm_update"))
    seconds = time.perf_counter() - started
    if job.version is None or job.train is None:
        raise RuntimeError(f"the warm update trained nothing: {job.plan.reason}")
    decision = promotion.decide(url, job.version.version, JobConfig.gate_tolerance)
    return {"rows": job.train.n_train, "seconds": seconds, "policy": job.plan.policy, "reason": job.plan.reason,
            "day": day[0].isoformat() if day else None, "day_rows": day_rows,
            "features_refresh_seconds": refresh["seconds"], "fit_seconds": job.train.seconds,
            "epochs": job.train.epochs_run, "holdout_rmse": job.metrics["holdout_rmse"],
            "champion_holdout_rmse": job.metrics.get("champion_holdout_rmse"), "gate": decision.decision}


def train_ceiling(ctx: Context) -> dict[str, Any]:
    """`model.fit` on in-memory random tensors of the training batches' shapes (bench_train's ceiling)."""
    import tensorflow as tf

    from benchmarks import bench_train
    from movierec_assets.ml.two_tower import build_model

    shape = ctx["train_shape"]
    bench_train.USER_FEATURES, bench_train.MOVIE_FEATURES = shape["user_features"], shape["movie_features"]
    cfg = _train_config(ctx)
    logq = np.full(shape["movies"], -np.log(shape["movies"]), np.float32)
    # The same model as `train`: its movie-ID table size and its uniform negatives per batch.
    negatives = cfg.uniform_negatives if cfg.retrieval_weight > 0 else 0
    ds = bench_train.random_batches(tf, cfg.batch_size, shape["users"], shape["movies"], logq, negatives=negatives)
    model = build_model(shape["user_features"], shape["movie_features"], cfg.learning_rate,
                        movie_vocab=np.arange(shape["movie_id_rows"], dtype=np.int32), **cfg.model_kwargs())
    started = time.perf_counter()
    rate = bench_train.fit_rate(model, ds, CEILING_STEPS, cfg.batch_size, TRAIN_WINDOW)
    return {"rows": CEILING_STEPS * cfg.batch_size, "seconds": time.perf_counter() - started,
            "steady_examples_per_s": rate}


def embeddings(ctx: Context) -> dict[str, Any]:
    """movie_embeddings: the champion's movie tower over every movie, stored (table + .npy)."""
    from movierec_assets.serving.offline.batch import embed_champion

    started = time.perf_counter()
    run = embed_champion(os.environ["MOVIEREC_DATABASE_URL"], force=True)
    return {"rows": run.movies, "seconds": time.perf_counter() - started, "dims": run.dims,
            "version": run.version}


def recommend(ctx: Context) -> dict[str, Any]:
    """Top 10 for 1,000 users through the real Recommender (PostgreSQL user lookups included);
    ceiling in the same process: bare `E @ u` + argpartition on the same embedding matrix."""
    from movierec_assets.db import bulk
    from movierec_assets.serving.online.recommender import from_database

    url = os.environ["MOVIEREC_DATABASE_URL"]
    ids = bulk.read_polars(url, "SELECT user_id FROM features.user_features ORDER BY user_id")["user_id"].to_numpy()
    users = np.random.default_rng(ctx["seed"]).choice(ids, min(TOPN_USERS, len(ids)), replace=False)
    rec = from_database(url, reload_every=3600)
    rec.recommend(int(users[0]), 10)  # loads the state (embeddings, tower) once, not timed
    latencies = []
    started = time.perf_counter()
    for u in users:
        t = time.perf_counter()
        rec.recommend(int(u), 10)
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    matrix = rec.state.store.matrix
    queries = np.random.default_rng(1).standard_normal((len(users), matrix.shape[1])).astype(np.float32)
    t = time.perf_counter()
    for q in queries:
        s = matrix @ q
        np.argpartition(s, len(s) - 10)[-10:]
    ceiling = time.perf_counter() - t
    ms = np.array(latencies) * 1e3
    return {"rows": len(users), "seconds": seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "ceiling_seconds": ceiling, "movies": int(matrix.shape[0])}


STAGES = {
    "generate": generate, "ingest": ingest, "ingest_ceiling": ingest_ceiling, "partitions": partitions,
    "features": features, "train": train, "train_ceiling": train_ceiling, "embeddings": embeddings,
    "recommend": recommend, "warm_update": warm_update,
}
