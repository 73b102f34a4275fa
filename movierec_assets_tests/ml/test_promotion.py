"""The champion gate judges its own run's model, decides once, and trainings are serialised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from movierec_assets.assets.ml import TRAINING_POOL, candidate_of_run, trained_model
from movierec_assets.db.connect import connect
from movierec_assets.instance import DAGSTER_YAML, bootstrap_instance
from movierec_assets.ml import promotion, registry
from movierec_assets.resources import PostgresResource
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.ml.test_asset import _load_ml_small

CHILD = Path(__file__).with_name("gate_child.py")


def _candidate(url: str, root: Path, version: str, metrics: dict) -> None:
    (root / version).mkdir(parents=True)
    (root / version / registry.MODEL_FILE).write_bytes(b"placeholder")
    registry.register_candidate(url, version, root / version, metrics, None, None)


def _empty_registry(url: str) -> None:
    with connect(url) as conn:
        conn.execute("DELETE FROM ml.model_versions")  # decisions go with them (ON DELETE CASCADE)
        conn.commit()


def test_decisions_are_recorded_once_with_decided_at_and_run(pg_url: str, tmp_path: Path) -> None:
    _empty_registry(pg_url)
    _candidate(pg_url, tmp_path, "p1", {"holdout_rmse": 0.9})
    first = promotion.decide(pg_url, "p1", 0.01, run_id="run-a")
    assert (first.decision, first.run_id, first.champion_before) == ("promoted", "run-a", None)
    row = registry.get_version(pg_url, "p1")
    assert row.status == "champion" and row.decided_at == first.decided_at
    assert promotion.decide(pg_url, "p1", 0.01, run_id="run-b") == first  # idempotent: the first decision stands
    _candidate(pg_url, tmp_path, "p2", {"holdout_rmse": 2.0, "champion_version": "p1", "champion_holdout_rmse": 0.9})
    second = promotion.decide(pg_url, "p2", 0.01, run_id="run-c")
    assert (second.decision, second.champion_before) == ("rejected", "p1")
    assert registry.reject(pg_url, "p2", "again").reason == second.reason  # unchanged
    _candidate(pg_url, tmp_path, "p3", {"holdout_rmse": 0.8, "champion_version": "p1", "champion_holdout_rmse": 0.9})
    assert promotion.decide(pg_url, "p3", 0.01).decision == "promoted"
    assert registry.get_version(pg_url, "p1").status == "retired"
    assert registry.promote(pg_url, "p1").status == "retired"  # re-promoting an old model changes nothing
    assert registry.current_champion(pg_url).version == "p3"
    with pytest.raises(ValueError, match="rejected"):
        registry.promote(pg_url, "p2")
    with pytest.raises(KeyError):
        promotion.decide(pg_url, "nope", 0.01)


def test_the_check_reads_its_own_runs_materialization() -> None:
    """Two runs: each run's candidate is its own model, not the latest one."""

    @dg.asset(name="trained_model")
    def standin(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]  # Dagster reads no str annotation
        return dg.MaterializeResult(metadata={"model_version": context.run_id[:8]})

    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([standin], instance=instance)
    second = dg.materialize([standin], instance=instance)
    assert candidate_of_run(instance, first.run_id) == first.run_id[:8]
    assert candidate_of_run(instance, second.run_id) == second.run_id[:8]
    assert candidate_of_run(instance, "no-such-run") is None


def test_training_is_in_a_pool_the_instance_limits_to_one() -> None:
    assert trained_model.op.pool == TRAINING_POOL
    assert DAGSTER_YAML["concurrency"]["pools"]["default_limit"] == 1


def _step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    events = [e for e in instance.all_logs(run_id) if e.step_key == "trained_model" and e.dagster_event]
    start = min(e.timestamp for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_START)
    end = max(e.timestamp for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS)
    return start, end


def test_two_concurrent_trainings_each_decide_their_own_version(
    pg_url: str, ml_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec_assets.assets.features import feature_tables, scaling_stats

    _load_ml_small(pg_url, ml_small)
    assert dg.materialize([feature_tables, scaling_stats], resources={"postgres": PostgresResource()}).success
    home = traversable_tmpdir("movierec-pool-")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    bootstrap_instance(home).dispose()  # what every CLI entry does: the training pool exists up front
    outs = [home / f"run{i}.json" for i in range(2)]
    children = [subprocess.Popen([sys.executable, str(CHILD), str(out)], env=os.environ.copy()) for out in outs]
    assert [child.wait(timeout=900) for child in children] == [0, 0]
    runs = [json.loads(out.read_text()) for out in outs]
    assert runs[0]["version"] != runs[1]["version"]
    for run in runs:
        assert run["judged"] == run["version"] and run["decided_by_run"] == run["run_id"]
        decided = registry.decision(pg_url, run["version"])
        assert decided is not None and decided.run_id == run["run_id"]
    instance = dg.DagsterInstance.from_config(str(home))
    (_, a1), (b0, _) = sorted(_step_window(instance, run["run_id"]) for run in runs)
    assert a1 <= b0, "the two trainings overlapped: the training pool did not serialise them"
