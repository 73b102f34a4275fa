"""Materializing assets never changes the definitions: they depend on the dataset's content alone."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pytest

from movierec_assets.assets.ingest import IngestConfig, raw_movies, raw_ratings
from movierec_assets.definitions import build_definitions
from movierec_assets.movielens import split
from movierec_assets.movielens.synth import write_synthetic
from movierec_assets.resources import PostgresResource
from movierec_assets.settings import Settings
from movierec_assets_tests.conftest import traversable_tmpdir


def _snapshot(defs: dg.Definitions) -> dict[str, object]:
    """What a user sees of the definitions: assets, partitions, jobs, schedules, sensors."""
    graph = defs.resolve_asset_graph()
    daily = graph.get(dg.AssetKey("daily_partitioned_ratings"))
    return {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "checks": sorted(k.name for k in graph.asset_check_keys),
        "partitions": daily.partitions_def.get_partition_keys(),
        "daily_description": daily.description,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
        "schedules": [(s.name, s.cron_schedule) for s in defs.schedules or []],
        "sensors": [(s.name, s.description) for s in defs.sensors or []],
    }


def test_definitions_are_the_same_before_and_after_raw_ratings(pg_url: str) -> None:
    data = traversable_tmpdir("movierec-state-data-") / "ml-synth"
    write_synthetic(data, 3000, seed=7)
    home = traversable_tmpdir("movierec-state-home-")
    settings = Settings.from_env({"MOVIEREC_HOME": str(home), "MOVIEREC_DATA_DIR": str(data)})
    before = _snapshot(build_definitions(settings))
    assert before["partitions"][0] == split.split_manifest(data).future_days()[0].isoformat()

    config = IngestConfig(data_dir=str(data))
    result = dg.materialize([raw_movies, raw_ratings], resources={"postgres": PostgresResource()},
                            run_config=dg.RunConfig({"raw_movies": config, "raw_ratings": config}))
    assert result.success
    split._MEMO.clear()  # recompute from scratch, as a new process would
    assert _snapshot(build_definitions(settings)) == before
    assert sorted(p.name for p in home.iterdir()) == []  # the assets wrote nothing the definitions read


def test_definitions_load_from_the_decorated_entry_point() -> None:
    import movierec_assets

    defs = movierec_assets.defs()
    assert isinstance(defs, dg.Definitions)
    dg.Definitions.validate_loadable(defs)


def test_generating_the_synthetic_default_does_not_change_the_definitions(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MOVIEREC_DATA_DIR: raw_ratings generates the synthetic default, whose split the
    definitions already used before it existed."""
    home = traversable_tmpdir("movierec-state-default-")
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    monkeypatch.delenv("MOVIEREC_DATA_DIR", raising=False)
    settings = Settings.from_env()
    before = _snapshot(build_definitions(settings))
    result = dg.materialize([raw_movies, raw_ratings], resources={"postgres": PostgresResource()})
    assert result.success and (settings.default_dataset / "ratings.csv").is_file()
    split._MEMO.clear()
    assert _snapshot(build_definitions(settings)) == before
    cutoff = result.asset_materializations_for_node("raw_ratings")[0].metadata["cutoff_day"].value
    assert before["partitions"][0] == (date.fromisoformat(cutoff) + timedelta(days=1)).isoformat()
