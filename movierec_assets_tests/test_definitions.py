"""The definitions read well in the Dagster UI, and the code location loads fast without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from movierec_assets.definitions import build_definitions
from movierec_assets.settings import Settings
from movierec_assets_tests.conftest import traversable_tmpdir

# A fresh home without MOVIEREC_DATA_DIR: the synthetic default's days, before it is generated.
defs = build_definitions(Settings.from_env({"MOVIEREC_HOME": str(traversable_tmpdir("movierec-defs-"))}))

EXPECTED_GROUPS = {
    "raw_movies": "ingest",
    "raw_ratings": "ingest",
    "daily_partitioned_ratings": "ingest",
    "user_features": "features",
    "movie_features": "features",
    "scaling_stats": "features",
    "trained_model": "ml",
    "movie_embeddings": "serving",
    "user_recommendations": "serving",
}
ALLOWED_KINDS = {"postgres", "polars", "tensorflow"}
OWNER = "team:movierec"
# ~1 CPU s measured here (dagster and the definitions); importing TensorFlow alone costs ~3 CPU s.
IMPORT_CPU_SECONDS_LIMIT = 3.0


def _specs() -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize("name", sorted(EXPECTED_GROUPS))
def test_asset_reads_well_in_the_ui(name: str) -> None:
    specs = _specs()
    assert name in specs, f"asset {name!r} is not defined yet (defined: {sorted(specs)})"
    spec = specs[name]
    assert spec.description and len(spec.description.strip()) >= 20, f"{name}: needs a real description"
    assert OWNER in spec.owners, f"{name}: owners {spec.owners} lack {OWNER}"
    assert spec.kinds, f"{name}: no kinds"
    assert spec.kinds <= ALLOWED_KINDS, f"{name}: kinds {spec.kinds} outside {ALLOWED_KINDS}"
    assert spec.group_name == EXPECTED_GROUPS[name], f"{name}: group {spec.group_name}"
    assert spec.code_version, f"{name}: no code_version"


def test_no_unexpected_assets_or_groups() -> None:
    for name, spec in _specs().items():
        assert spec.group_name in set(EXPECTED_GROUPS.values()), f"{name}: group {spec.group_name}"
        assert spec.kinds <= ALLOWED_KINDS, f"{name}: kinds {spec.kinds}"


def test_asset_checks_have_descriptions() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        assert spec.description, f"asset check {key.name} on {key.asset_key.to_user_string()}: no description"


def test_jobs_schedules_and_sensors_have_descriptions() -> None:
    user_jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    for job in user_jobs:
        assert job.description, f"job {job.name}: no description"
    for schedule in defs.schedules or []:
        assert schedule.description, f"schedule {schedule.name}: no description"
    for sensor in defs.sensors or []:
        assert sensor.description, f"sensor {sensor.name}: no description"


_IMPORT_PROBE = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import psutil
import movierec_assets
defs = movierec_assets.defs()  # what Dagster does: load the whole code location
assets = len(list(defs.assets or []))
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
heavy = sorted(m for m in ("tensorflow", "keras", "onnxruntime", "onnx") if m in sys.modules)
keys = defs.get_job_def("daily_ratings_job").partitions_def.get_partition_keys()
print(json.dumps({"seconds": seconds, "cpu": cpu, "heavy": heavy, "assets": assets, "first": keys[0],
                  "last": keys[-1], "children": len(psutil.Process().children(recursive=True))}))
"""


def _probe(env: dict[str, str]) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "DAGSTER_"))}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=120,
                          check=False, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_import_is_fast_and_does_not_load_tensorflow() -> None:
    home = traversable_tmpdir("movierec-probe-")
    probe = _probe({"MOVIEREC_HOME": str(home)})
    assert probe["assets"] > 0, probe
    assert probe["heavy"] == [], f"loading the definitions imported {probe['heavy']}: import them inside asset bodies"
    # CPU time, not wall time: the verdict must not depend on what else the machine is running.
    assert probe["cpu"] < IMPORT_CPU_SECONDS_LIMIT, (
        f"loading the definitions took {probe['cpu']:.1f} CPU s ({probe['seconds']:.1f} s wall)")


def test_loading_in_an_empty_read_only_home_writes_nothing_and_starts_nothing() -> None:
    from movierec_assets.movielens.split import SYNTHETIC_DEFAULT

    home = traversable_tmpdir("movierec-readonly-")
    home.chmod(0o555)
    try:
        probe = _probe({"MOVIEREC_HOME": str(home)})
    finally:
        home.chmod(0o755)
    assert _tree(home) == [], "loading the definitions wrote into MOVIEREC_HOME"
    assert probe["children"] == 0, "loading the definitions started a process (a server?)"
    # No dataset yet: the synthetic default's own future days, which the CLI will generate.
    assert probe["first"] == (SYNTHETIC_DEFAULT.cutoff_day + timedelta(days=1)).isoformat()
    assert probe["last"] == SYNTHETIC_DEFAULT.last_day.isoformat()


def test_a_configured_dataset_gives_its_future_days_in_a_fresh_home(ml_small: Path) -> None:
    from movierec_assets.movielens.split import split_manifest

    home = traversable_tmpdir("movierec-fresh-")
    manifest = split_manifest(ml_small)
    probe = _probe({"MOVIEREC_HOME": str(home), "MOVIEREC_DATA_DIR": str(ml_small)})
    assert probe["first"] == manifest.future_days()[0].isoformat() != "2000-01-01"
    assert probe["last"] == manifest.last_day.isoformat()
    assert _tree(home) == []


def test_dagster_cli_validates_the_code_location(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "DAGSTER_"))}
    (tmp_path / "dagster").mkdir()
    env.update(MOVIEREC_HOME=str(traversable_tmpdir("movierec-cli-")), DAGSTER_HOME=str(tmp_path / "dagster"))
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "movierec_assets"],
                          capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "Validation successful" in proc.stdout + proc.stderr


def test_bad_settings_name_the_variable() -> None:
    from movierec_assets.settings import SettingsError

    bad = {
        "MOVIEREC_EXECUTOR": "spark", "MOVIEREC_TRAIN_STRATEGY": "tpu", "MOVIEREC_REPLAY_CRON": "daily",
        "MOVIEREC_PG_PORT": "70000", "MOVIEREC_DATA_DIR": "/nonexistent/movielens",
        "MOVIEREC_DATABASE_URL": "mysql://u:secret@h/db", "MOVIEREC_PG_OS_USER": "no body",
    }
    for name, value in bad.items():
        with pytest.raises(SettingsError, match=name) as info:
            Settings.from_env({"MOVIEREC_HOME": "/tmp/x", name: value})
        assert "secret" not in str(info.value)
    settings = Settings.from_env({"MOVIEREC_HOME": "/tmp/x", "MOVIEREC_DATABASE_URL": "postgresql://u:secret@h/db"})
    assert "secret" not in repr(settings)
