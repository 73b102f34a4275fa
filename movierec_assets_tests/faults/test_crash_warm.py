"""SIGKILL in the middle of a warm update: no half version, the champion unchanged; the rerun
resumes from the warm checkpoint and registers the warm candidate with its parent."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from movierec_assets.config import paths
from movierec_assets.ml import registry
from movierec_assets.resources import PostgresResource
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import spawn_child, wait_go
from movierec_assets_tests.faults.test_crash_training import (
    CHAMPION_CONFIG,
    EPOCHS,
    KILL_AFTER_EPOCHS,
    _epochs_checkpointed,
    _kill_during_next_checkpoint_save,
    _load_small_world,
    _registry_rows,
)
from movierec_assets_tests.ml.test_warm import _add_new_ratings

pytestmark = pytest.mark.faults


@pytest.mark.fault_scenario("crash mid-training", "SIGKILL inside the checkpoint save after epoch 2 of 4 (warm update)")
def test_sigkill_during_warm_update(pg_url: str, fault: FaultRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec_assets.assets.features import feature_tables, scaling_stats
    from movierec_assets.assets.ml import champion_gate, trained_model

    monkeypatch.setenv("MOVIEREC_HOME", str(traversable_tmpdir("movierec-fault-warm-")))
    models: Path = paths().models
    _load_small_world(pg_url)
    assets = [feature_tables, scaling_stats, trained_model, champion_gate]
    config = {**CHAMPION_CONFIG, "batch_size": 64, "user_layers": [64], "movie_layers": [64], "embedding": 16,
              "patience": EPOCHS, "seed": 7}  # the child's architecture, so the warm start matches
    assert dg.materialize(assets, resources={"postgres": PostgresResource()},
                          run_config={"ops": {"trained_model": {"config": config}}}).success
    champion = registry.current_champion(pg_url)
    assert champion is not None
    _add_new_ratings(pg_url, 300, seed=1)
    assert dg.materialize([feature_tables, scaling_stats], resources={"postgres": PostgresResource()}).success
    before, on_disk = _registry_rows(pg_url), {p.name for p in models.iterdir()}

    proc = wait_go(spawn_child(["warm", str(EPOCHS)], pg_url))
    _kill_during_next_checkpoint_save(proc, models)
    fault.tried += 1
    killed_at = _epochs_checkpointed(models)
    assert _registry_rows(pg_url) == before, "the killed warm update registered or promoted something"
    assert registry.current_champion(pg_url).version == champion.version  # type: ignore[union-attr]
    assert {p.name for p in models.iterdir()} - on_disk <= {"runs"}, "a partial model directory"

    rerun = wait_go(spawn_child(["warm", str(EPOCHS)], pg_url))
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    assert "retrain policy warm" in out and "resuming from" in out, out[-3000:]
    stats = dict(kv.split("=", 1) for kv in re.search(r"^initial_epoch=.*$", out, re.MULTILINE)[0].split())
    assert int(stats["initial_epoch"]) >= KILL_AFTER_EPOCHS
    after = registry.get_version(pg_url, stats["version"])
    assert after is not None and after.status == "candidate" and after.policy == "warm"
    assert after.parent_version == champion.version
    assert registry.current_champion(pg_url).version == champion.version  # type: ignore[union-attr]
    assert not list(models.glob("runs/*")), "the finished run left its checkpoints behind"
    fault.survived += 1
    fault.note(f"killed after epoch {killed_at}/{EPOCHS} of a warm update; rerun resumed at epoch "
               f"{stats['initial_epoch']} and registered warm {after.version} (parent {champion.version})")
