"""The scale-out configuration files parse, and validate against the packages that read them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from movierec_assets.deploy import executor_for
from movierec_assets.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _load(rel: str) -> dict:
    data = yaml.safe_load((DEPLOY / rel).read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("rel", ["k8s/dagster.yaml", "celery/dagster.yaml"])
def test_instance_files_validate_against_dagster_schema(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "postgresql://movierec@db.example.internal:5432/movierec")
    data = _load(rel)
    assert data["storage"]["postgres"]["postgres_url"] == {"env": "MOVIEREC_DATABASE_URL"}
    result = process_config(dagster_instance_config_schema(), data)
    assert result.success, result.errors
    assert data["concurrency"]["pools"]["default_limit"] == 1  # one training at a time (the "training" pool)


@pytest.mark.skipif(importlib.util.find_spec("dagster_k8s") is None, reason="dagster-k8s not installed")
def test_k8s_run_launcher_config_is_valid() -> None:
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    launcher = _load("k8s/dagster.yaml")["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors


@pytest.mark.skipif(importlib.util.find_spec("dagster_celery") is None, reason="dagster-celery not installed")
def test_celery_executor_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster_celery import celery_executor

    from movierec_assets.workers.executor import movierec_celery_executor

    monkeypatch.setenv("MOVIEREC_BROKER_URL", "redis://:secret@127.0.0.1:6379/0")
    execution = _load("celery/executor.yaml")["execution"]
    for executor in (celery_executor, movierec_celery_executor):  # the same schema
        result = process_config(executor.config_schema.config_type, execution["config"])
        assert result.success, result.errors
        assert result.value["broker"] == "redis://:secret@127.0.0.1:6379/0"
    monkeypatch.setenv("MOVIEREC_EXECUTOR", "celery")
    assert executor_for(Settings.from_env().executor) is movierec_celery_executor


def test_helm_values_use_external_postgres_and_k8s_launcher() -> None:
    values = _load("helm/values.yaml")
    assert values["postgresql"]["enabled"] is False
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "movierec_assets"]
    assert "password" not in (DEPLOY / "helm/values.yaml").read_text().lower()


def test_broker_url_is_validated_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_BROKER_URL", "http://user:hunter2@broker.example:80/")
    with pytest.raises(ValueError, match="MOVIEREC_BROKER_URL") as info:
        Settings.from_env()
    assert "hunter2" not in str(info.value)
    monkeypatch.setenv("MOVIEREC_BROKER_URL", "redis://:hunter2@127.0.0.1:6379/0")
    settings = Settings.from_env()
    assert settings.broker_url == "redis://:hunter2@127.0.0.1:6379/0" and "hunter2" not in repr(settings)


def test_executor_choice_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_EXECUTOR", "default")
    assert executor_for(Settings.from_env().executor) is None
    monkeypatch.setenv("MOVIEREC_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="MOVIEREC_EXECUTOR"):
        executor_for(Settings.from_env().executor)
