"""Training: time-ordered validation, early stopping, LR plateau, resumable checkpoints, fixed seeds."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import polars as pl

from movierec_assets.features.compute import movie_feature_columns
from movierec_assets.ml import distribute, history
from movierec_assets.ml.config import TrainConfig
from movierec_assets.ml.pipeline import (
    FeatureMatrices,
    RatingArrays,
    TrainingExtras,
    make_dataset,
    movie_log_frequency,
)
from movierec_assets.ml.ranking import MIN_USERS as MIN_PRIOR_USERS
from movierec_assets.ml.ranking import fit_prior
from movierec_assets.ml.two_tower import ColaborativeFiltering, build_model, compile_model, embed, embed_users

__all__ = ["TrainConfig", "TrainResult", "movie_vocab", "train", "train_histories"]

CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainResult:
    model: ColaborativeFiltering
    history: dict[str, list[float]]
    epochs_run: int
    initial_epoch: int
    examples_per_second: float
    seconds: float
    final_loss: float
    final_val_loss: float
    val_rmse: float
    n_train: int
    n_val: int
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("model", "history")} | {"history": self.history}


class EpochLogger(keras.callbacks.Callback):
    """Sends one line per epoch (losses, rate) to a logger: the Dagster run log in the asset."""

    def __init__(self, logger: logging.Logger | Any, total_epochs: int, steps: int, batch_size: int) -> None:
        super().__init__()
        self.logger, self.total, self.examples = logger, total_epochs, steps * batch_size
        self._t0 = 0.0
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        dt = time.perf_counter() - self._t0
        self.rates.append(self.examples / dt if dt > 0 else 0.0)
        parts = ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if isinstance(v, int | float))
        self.logger.info(f"epoch {epoch + 1}/{self.total}: {parts}, {self.rates[-1]:,.0f} examples/s")


def _resume_point(run_dir: Path) -> tuple[Path | None, int]:
    """The last checkpoint and the epoch count it had completed (0 when starting fresh)."""
    state = run_dir / CHECKPOINT_DIR / "state.json"
    if not state.exists():
        return None, 0
    info = json.loads(state.read_text())
    path = run_dir / CHECKPOINT_DIR / "last.keras"
    return (path, int(info["epochs_done"])) if path.exists() else (None, 0)


class _Checkpoint(keras.callbacks.Callback):
    """After each epoch: save the model to next.keras, rename it over last.keras, then record the
    epoch count in state.json (written and renamed too). keras' ModelCheckpoint writes the .keras zip
    in place, so a SIGKILL during its save left a torn last.keras that every resume failed to load;
    with renames a kill at any moment leaves a complete last.keras."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.dir = run_dir / CHECKPOINT_DIR

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.model.save(self.dir / "next.keras")
        (self.dir / "next.keras").replace(self.dir / "last.keras")
        tmp = self.dir / "state.tmp"
        tmp.write_text(json.dumps({"epochs_done": epoch + 1, "logs": {k: float(v) for k, v in (logs or {}).items()}}))
        tmp.replace(self.dir / "state.json")


def _callbacks(run_dir: Path, cfg: TrainConfig, logger: Any, steps: int) -> list[keras.callbacks.Callback]:
    ckpt = run_dir / CHECKPOINT_DIR
    ckpt.mkdir(parents=True, exist_ok=True)
    return [
        _Checkpoint(run_dir),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience // 2)),
        EpochLogger(logger, cfg.epochs, steps, cfg.batch_size),
    ]


def train(
    train_data: RatingArrays,
    val_data: RatingArrays,
    features: FeatureMatrices,
    run_dir: Path,
    cfg: TrainConfig = TrainConfig(),
    logger: Any = None,
    warm_start: Path | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    train_dataset: tuple[Any, int] | None = None,
) -> TrainResult:
    """Fit a ColaborativeFiltering model; resume from `run_dir`'s last checkpoint when one exists.

    `warm_start` (a champion's .keras file): fine-tune that model when its architecture matches
    (`extra["warm_started"]` says whether it did).
    `train_dataset` = (dataset, steps_per_epoch) replaces the in-memory pipeline (streaming mode).
    """
    logger = logger or logging.getLogger(__name__)
    keras.utils.set_random_seed(cfg.seed)
    strategy = distribute.strategy_from_env()  # MOVIEREC_TRAIN_STRATEGY (+ TF_CONFIG for multi_worker)
    run_dir = distribute.worker_dir(run_dir, strategy)
    resume, initial_epoch = _resume_point(run_dir)
    warm_started = resume is not None and warm_start is not None  # a resumed warm run: warm from its checkpoint
    with strategy.scope():  # variables (model + optimizer) are created mirrored across replicas/workers
        if resume is not None:
            model = keras.saving.load_model(resume, safe_mode=True)
            logger.info(f"resuming from {resume} after epoch {initial_epoch}")
        else:
            model = _warm_start(warm_start, features, cfg, logger) if warm_start is not None else None
            warm_started = model is not None
            if model is None:
                model = build_model(features.user_matrix.shape[1], features.movie_matrix.shape[1], cfg.learning_rate,
                                    movie_vocab(train_data, features, cfg), **cfg.model_kwargs())
    logq = movie_log_frequency(train_data, len(features.movie_ids)) if cfg.retrieval_weight > 0 else None
    tr_extras, va_extras = _extras(model, train_data, val_data, features, cfg)
    if train_dataset is not None:  # streamed: no causal histories (the user tower sees features only)
        train_ds, steps = train_dataset
    else:
        train_ds, steps = make_dataset(train_data, features, cfg.batch_size, True, cfg.seed, initial_epoch, logq,
                                       tr_extras)
    val_ds, val_steps = make_dataset(val_data, features, max(cfg.batch_size, 4096), False, movie_logq=logq,
                                     extras=replace(va_extras, uniform_negatives=0))
    train_ds, val_ds = distribute.shard(train_ds), distribute.shard(val_ds)
    callbacks = _callbacks(run_dir, cfg, logger, steps) + list(extra_callbacks or [])
    distribute.keras_fit_workaround(model, strategy)
    t0 = time.perf_counter()
    with strategy.scope():
        hist = model.fit(
            train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
            steps_per_epoch=steps, validation_steps=val_steps, callbacks=callbacks, verbose=0, shuffle=False,
        )
        seconds = time.perf_counter() - t0
        val = model.evaluate(val_ds, steps=val_steps, verbose=0, return_dict=True)
    if warm_started:  # a fine-tune on a few days: the parent's prior stands until the next full training
        logger.info("ranking prior: the parent's, kept (warm update)")
        prior: dict[str, Any] | None = {"kept": True, "from": "parent"}
    else:
        prior = _fit_ranking_prior(model, train_data, val_data, features, cfg, logger)
    history = {k: [float(x) for x in v] for k, v in hist.history.items()}
    rates = next(c for c in callbacks if isinstance(c, EpochLogger)).rates
    return TrainResult(
        model=model,
        history=history,
        epochs_run=len(history.get("loss", [])),
        initial_epoch=initial_epoch,
        examples_per_second=float(sorted(rates)[len(rates) // 2]) if rates else 0.0,
        seconds=seconds,
        final_loss=history["loss"][-1] if history.get("loss") else float("nan"),
        final_val_loss=float(val["loss"]),
        val_rmse=float(val["rmse"]),
        n_train=len(train_data) if train_dataset is None else steps * cfg.batch_size,
        n_val=len(val_data),
        extra={"strategy": type(strategy).__name__, "replicas": int(strategy.num_replicas_in_sync),
               "chief": distribute.is_chief(strategy), "ranking_prior": prior, "warm_started": warm_started},
    )


def movie_vocab(data: RatingArrays, features: FeatureMatrices, cfg: TrainConfig) -> np.ndarray:
    """The movie ids that get their own ID row: at least `id_min_ratings` ratings in `data`."""
    if cfg.id_min_ratings <= 0 or not (cfg.movie_tower_ids or cfg.history_len > 0) or len(data) == 0:
        return np.zeros(0, np.int32)
    counts = np.bincount(data.movie_idx, minlength=len(features.movie_ids))
    return features.movie_ids[counts >= cfg.id_min_ratings].astype(np.int32)


def _extras(model: ColaborativeFiltering, tr: RatingArrays, va: RatingArrays, features: FeatureMatrices,
            cfg: TrainConfig) -> tuple[TrainingExtras, TrainingExtras]:
    """Causal histories over train then validation (validation events see all training events and
    the earlier validation ones), and the uniform negatives."""
    k = cfg.uniform_negatives if cfg.retrieval_weight > 0 else 0
    if not model.uses_history:
        return TrainingExtras(uniform_negatives=k), TrainingExtras()
    both = [np.concatenate([a, b]) for a, b in ((tr.user_idx, va.user_idx), (tr.movie_idx, va.movie_idx),
                                                 (tr.rating, va.rating), (tr.rated_at, va.rated_at))]
    idx = history.causal_index(both[0], features.movie_ids[both[1]], both[2], both[3])
    n = len(tr)
    part = [history.CausalIndex(idx.seq_movie_ids, idx.seq_ratings, idx.pos[s], idx.start[s])
            for s in (slice(0, n), slice(n, None))]
    return (TrainingExtras(part[0], cfg.history_len, k, cfg.seed, cfg.history_gap),
            TrainingExtras(part[1], cfg.history_len))


def train_histories(model: ColaborativeFiltering, data: RatingArrays, features: FeatureMatrices,
                    user_rows: np.ndarray) -> history.Histories | None:
    """Each of `user_rows`' newest `history_len` ratings in `data` (None when the model has no history)."""
    if not model.uses_history:
        return None

    rows = pl.DataFrame({"user_id": features.user_ids[data.user_idx], "movie_id": features.movie_ids[data.movie_idx],
                         "rating": data.rating, "rated_at": data.rated_at})
    return history.histories_for_users(rows, features.user_ids[user_rows], model.hparams.history_len)


def _fit_ranking_prior(model: ColaborativeFiltering, tr: RatingArrays, va: RatingArrays, features: FeatureMatrices,
                       cfg: TrainConfig, logger: Any) -> dict[str, Any] | None:
    """Fit the model's rank_weights on the validation split (see ml/ranking.py); None when skipped.

    Too few validation users (`ranking.MIN_USERS`, e.g. a warm update's one-day holdout) are no
    evidence: the model keeps the weights it has (a warm update its parent's, a new model none)."""
    if not cfg.ranking_prior:
        model.rank_weights.assign(np.zeros(model.n_movie_features, np.float32))
        logger.info("ranking prior: disabled")
        return None
    if len(tr) == 0 or len(va) == 0:
        logger.info("ranking prior: not refitted (training data streamed, so seen pairs are unknown)")
        return None
    users = np.unique(va.user_idx)
    user_emb = np.zeros((len(features.user_ids), model.embedding), np.float32)
    user_emb[users] = embed_users(model, features.user_matrix[users], features.user_ids[users],
                                  train_histories(model, tr, features, users))
    movie_emb = embed(model.movie_net, features.movie_matrix, features.movie_ids)
    choice = fit_prior(user_emb, movie_emb, features.movie_matrix, movie_feature_columns(),
                       (tr.user_idx, tr.movie_idx), (va.user_idx, va.movie_idx, va.rating), seed=cfg.seed)
    if choice.n_users < MIN_PRIOR_USERS:
        logger.info(f"ranking prior: kept as it was ({choice.n_users} validation users, fewer than {MIN_PRIOR_USERS})")
        return {**choice.summary(), "kept": True}
    model.rank_weights.assign(choice.weights)
    logger.info(f"ranking prior: {choice.terms or 'none'} (validation NDCG@10 "
                f"{choice.ndcg_without:.4f} -> {choice.ndcg:.4f} over {choice.n_users} users)")
    return choice.summary()


def _warm_start(path: Path, features: FeatureMatrices, cfg: TrainConfig, logger: Any) -> ColaborativeFiltering | None:
    """The champion itself, recompiled (a fresh optimiser at `cfg.learning_rate`), when its
    ModelConfig and feature widths match; it keeps its movie-ID vocabulary (new movies use the shared
    rare row until the next full training). None, logged, when the architecture differs."""
    champion = keras.saving.load_model(path, safe_mode=True)
    if (champion.hparams != cfg.model_config() or champion.n_user_features != features.user_matrix.shape[1]
            or champion.n_movie_features != features.movie_matrix.shape[1]):
        logger.info("warm start skipped: the champion's architecture differs")
        return None
    logger.info(f"warm-started from {path}")
    return compile_model(champion, cfg.learning_rate)
