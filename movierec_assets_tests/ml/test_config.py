"""One source per hyperparameter: the Dagster run config derives from ml/config.py (no TensorFlow)."""

from __future__ import annotations

from dataclasses import fields

from movierec_assets.assets.ml import TrainedModelConfig, _job_config
from movierec_assets.ml.config import JobConfig, ModelConfig, TrainConfig, flat_defaults


def test_dagster_run_config_has_every_field_and_default() -> None:
    run = TrainedModelConfig()
    assert set(TrainedModelConfig.model_fields) == set(flat_defaults())
    assert _job_config(run) == JobConfig()


def test_run_config_values_reach_the_training_config() -> None:
    job = _job_config(TrainedModelConfig(epochs=3, user_layers=[8, 4], temperature=0.2, gate_tolerance=0.05))
    assert job.train.epochs == 3 and job.train.user_layers == (8, 4) and job.train.temperature == 0.2
    assert job.gate_tolerance == 0.05


def test_model_kwargs_are_exactly_the_model_fields() -> None:
    kwargs = TrainConfig(embedding=16).model_kwargs()
    assert set(kwargs) == {f.name for f in fields(ModelConfig)} and kwargs["embedding"] == 16
    assert ModelConfig.from_dict(kwargs) == TrainConfig(embedding=16).model_config()
