"""The single source of every training hyperparameter and its default.

`ModelConfig` holds what the saved model needs to rebuild itself (its `get_config` is exactly these
fields plus the data-derived shapes); `TrainConfig` adds how it is fitted; `JobConfig` adds what the
`trained_model` asset does around the fit (registry, gate). The Dagster run config
(`assets/ml.py`), `train()`, the evaluation variants (`ml/evaluate.py`) and the saved model's
config all derive from these classes: change a default here and nowhere else.

No TensorFlow here: the Dagster definitions import this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from movierec_assets.config import TRAINING_POOL  # noqa: F401  (re-exported: the pool `trained_model` runs in)

# A tuple default is immutable, so a frozen dataclass may share it; Dagster gets it as a list.
IntTuple = tuple[int, ...]


@dataclass(frozen=True)
class ModelConfig:
    """The two-tower's architecture and losses (see ml/two_tower.py)."""

    user_layers: IntTuple = (256, 128)
    movie_layers: IntTuple = (256, 128)
    embedding: int = 64
    user_reg: float = 1e-6
    movie_reg: float = 1e-6
    # Legacy hashed-id embeddings in both towers (0 = off). The movie-ID vocabulary below replaces it.
    id_buckets: int = 0
    # Movie-ID embedding width; the table is shared by the movie tower and the user's history pool.
    id_dim: int = 32
    # Movies with at least this many training ratings get their own ID row (0 = no ID embeddings);
    # rarer or new movies share the "rare" row 0 and are carried by their features.
    id_min_ratings: int = 5
    movie_tower_ids: bool = True  # the movie tower reads its ID row (False: only histories use the table)
    # The user tower pools the user's last `history_len` rated movies (0 = aggregates only).
    # Off by default: on the inner validation split the history's effect was smaller than the
    # spread between seeds (~0.02 NDCG@10) while it cost 2.6x the training time, so the cheaper
    # model wins the tie (docs/model_evaluation.md has the ablation). 50 is the tested length.
    history_len: int = 0
    history_layers: IntTuple = (128,)
    # Also pool the history weighted by (rating - the history's mean rating); False: plain mean.
    history_rating_weight: bool = True
    # Training only: the share of examples whose history is hidden, so the features-only path
    # (cold users, serving without histories) stays trained.
    history_dropout: float = 0.5
    # Sampled softmax: in-batch negatives (logQ-corrected) plus `uniform_negatives` random movies.
    retrieval_weight: float = 0.1
    temperature: float = 0.05
    retrieval_rows: int = 1024
    uniform_negatives: int = 512
    positive_min_rating: float = 4.0  # retrieval positives: liked movies (4 stars+), or every rated one (0)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """From a saved config or run config (lists become tuples; unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise TypeError(f"unknown model settings: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists): what the saved model's get_config carries."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                if k in {f.name for f in fields(ModelConfig)}}


@dataclass(frozen=True)
class TrainConfig(ModelConfig):
    """ModelConfig plus the fit: budget, optimiser, validation and the ranking prior."""

    epochs: int = 10
    batch_size: int = 1024
    learning_rate: float = 2e-3
    ranking_prior: bool = True
    # Training histories end up to this share of the user's earlier ratings before the event
    # (random per example), as at evaluation and serving, where one history predicts many ratings.
    history_gap: float = 0.0
    val_fraction: float = 0.1
    patience: int = 10  # early stopping; best val_loss weights are restored either way
    seed: int = 42

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(ModelConfig.as_dict(self))

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `ColaborativeFiltering` / `build_model`."""
        return self.model_config().as_dict()


RETRAIN_POLICIES = ("auto", "none", "warm", "full")


@dataclass(frozen=True)
class JobConfig:
    """The `trained_model` job: the training config plus registry and gate settings."""

    train: TrainConfig = field(default_factory=TrainConfig)
    # The retraining policy (ml/policy.py, docs/continuous_training.md): auto | none | warm | full.
    retrain_policy: str = "auto"
    # A warm update: this many epochs at this learning rate over the ratings after the champion's
    # data_end plus `warm_history_sample` older ratings per new one (a random sample, so that it
    # does not forget the history).
    warm_epochs: int = 2
    warm_learning_rate: float = 1e-3
    warm_history_sample: float = 4.0
    memory_budget_mb: int = 2048
    rank_users_cap: int = 2000
    # The champion gate: relative tolerances on holdout RMSE (lower is better) and NDCG@10.
    gate_tolerance: float = 0.01
    ndcg_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.retrain_policy not in RETRAIN_POLICIES:
            raise ValueError(f"retrain_policy {self.retrain_policy!r}: expected one of {', '.join(RETRAIN_POLICIES)}")

    @property
    def memory_budget_bytes(self) -> int:
        return self.memory_budget_mb << 20


JOB_FIELDS = tuple(f.name for f in fields(JobConfig) if f.name != "train")


def flat_defaults() -> dict[str, Any]:
    """Every run-config field and its default: TrainConfig's, then JobConfig's (Dagster's form)."""
    train = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(TrainConfig()).items()}
    job = JobConfig()
    return train | {name: getattr(job, name) for name in JOB_FIELDS}


def job_from_flat(values: dict[str, Any]) -> JobConfig:
    """The inverse of `flat_defaults`: a flat run config -> JobConfig."""
    train_names = {f.name for f in fields(TrainConfig)}
    train = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in train_names}
    return JobConfig(TrainConfig(**train), **{k: values[k] for k in JOB_FIELDS if k in values})
