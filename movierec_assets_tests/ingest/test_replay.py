"""The replay producer, its CLI, its job and its schedule, on a tiny hand-made dataset."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from movierec_assets.ingest.replay import replay
from movierec_assets.movielens.source import scan_ratings
from movierec_assets.movielens.split import SplitManifest, compute_split
from movierec_assets_tests.conftest import traversable_tmpdir

HEADER = "userId,movieId,rating,timestamp"


def _ts(day: int, hour: int) -> int:
    return int(datetime(2015, 1, day, hour, tzinfo=UTC).timestamp())


# (user, movie, rating, timestamp): 3 history rows on Jan 1; future Jan 2 (2), Jan 3 (none), Jan 4, Jan 5 (2)
ROWS = [
    (1, 10, 4.0, _ts(1, 1)), (2, 10, 3.5, _ts(1, 2)), (3, 11, 5.0, _ts(1, 3)),
    (2, 11, 0.5, _ts(2, 9)), (1, 11, 2.0, _ts(2, 8)),
    (3, 10, 1.5, _ts(4, 23)),
    (1, 12, 4.5, _ts(5, 0)), (4, 12, 3.0, _ts(5, 0)),
]  # fmt: skip


@pytest.fixture
def dataset() -> tuple[Path, SplitManifest]:
    root = traversable_tmpdir("movierec-tiny-ml-")
    lines = [HEADER] + [f"{u},{m},{r},{t}" for u, m, r, t in ROWS]
    (root / "ratings.csv").write_text("\r\n".join(lines) + "\r\n")
    (root / "movies.csv").write_text("movieId,title,genres\n10,A (1999),Drama\n11,B (2000),Comedy\n12,C (2001),Action\n")
    manifest = compute_split(scan_ratings(root), history_count=3, dataset_id="tiny", source_dir=str(root))
    assert (manifest.cutoff_day, manifest.last_day) == (date(2015, 1, 1), date(2015, 1, 5))
    return root, manifest


def test_replay_writes_each_day_once_in_order(dataset: tuple[Path, SplitManifest], tmp_path: Path) -> None:
    root, manifest = dataset
    landing = tmp_path / "landing"
    assert replay(root, landing, days=2, manifest=manifest) == [date(2015, 1, 2), date(2015, 1, 3)]
    day2 = (landing / "2015-01-02.csv").read_text()
    assert day2 == f"{HEADER}\n1,11,2.0,{_ts(2, 8)}\n2,11,0.5,{_ts(2, 9)}\n"  # (timestamp, user, movie) order
    assert (landing / "2015-01-03.csv").read_text() == HEADER + "\n"  # a day without ratings: header only
    assert replay(root, landing, until=date(2015, 1, 4), manifest=manifest) == [date(2015, 1, 4)]
    (landing / "2015-01-02.csv").write_text("tampered")  # never written twice, even if it differs
    assert replay(root, landing, manifest=manifest) == [date(2015, 1, 5)]
    assert (landing / "2015-01-02.csv").read_text() == "tampered"
    assert (landing / "2015-01-05.csv").read_text() == f"{HEADER}\n1,12,4.5,{_ts(5, 0)}\n4,12,3.0,{_ts(5, 0)}\n"
    assert replay(root, landing, days=5, manifest=manifest) == []
    assert sorted(os.listdir(landing)) == [f"2015-01-0{d}.csv" for d in (2, 3, 4, 5)]  # no temp files left


def test_replay_resumes_a_missing_day(dataset: tuple[Path, SplitManifest], tmp_path: Path) -> None:
    root, manifest = dataset
    replay(root, tmp_path, manifest=manifest)
    (tmp_path / "2015-01-03.csv").unlink()
    assert replay(root, tmp_path, days=1, manifest=manifest) == [date(2015, 1, 3)]


def test_replay_refuses_another_dataset(dataset: tuple[Path, SplitManifest], tmp_path: Path) -> None:
    _, manifest = dataset
    with pytest.raises(ValueError, match="describes"):
        replay(tmp_path, tmp_path / "landing", days=1, manifest=manifest)
    with pytest.raises(ValueError, match="days must be >= 0"):
        replay(None, tmp_path / "landing", days=-1, manifest=manifest)


def test_cli_and_job_replay_the_configured_dataset(
    dataset: tuple[Path, SplitManifest], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec_assets.cli import main
    from movierec_assets.definitions import build_definitions
    from movierec_assets.settings import Settings

    root, _ = dataset  # the CLI and the job split it themselves, by the default fraction: cutoff Jan 2
    home = traversable_tmpdir("movierec-replay-home-")
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(home / "drop"))
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(root))
    result = CliRunner().invoke(main, ["replay", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 day file(s) (2015-01-03 .. 2015-01-03)" in result.output
    replay_job = build_definitions(Settings.from_env()).get_job_def("replay_job")
    assert replay_job.execute_in_process().success  # the schedule's job: one more day
    assert sorted(os.listdir(home / "drop")) == ["2015-01-03.csv", "2015-01-04.csv"]
    result = CliRunner().invoke(main, ["replay", "--until", "2015-01-05"])
    assert result.exit_code == 0 and "wrote 1 day file(s)" in result.output
    result = CliRunner().invoke(main, ["replay", "--days", "3"])
    assert result.exit_code == 0 and "nothing to replay" in result.output


def test_replay_schedule_cron_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from movierec_assets.definitions import build_definitions
    from movierec_assets.settings import Settings, SettingsError

    monkeypatch.delenv("MOVIEREC_REPLAY_CRON", raising=False)
    schedule = build_definitions(Settings.from_env()).get_schedule_def("replay_schedule")
    assert schedule.cron_schedule == "0 0 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    monkeypatch.setenv("MOVIEREC_REPLAY_CRON", "* * * * *")
    assert build_definitions(Settings.from_env()).get_schedule_def("replay_schedule").cron_schedule == "* * * * *"
    monkeypatch.setenv("MOVIEREC_REPLAY_CRON", "every day")
    with pytest.raises(SettingsError, match="MOVIEREC_REPLAY_CRON='every day': not a valid cron"):
        Settings.from_env()
