"""`movierec workers start|status|stop` as a user runs them: real processes, stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec_assets.config import Paths
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.movielens.synth import write_synthetic
from movierec_assets.workers.broker import REDIS_SERVER, LocalRedis, pid_alive
from movierec_assets.workers.pool import WorkerPool
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.workers.conftest import require_redis_server

MOVIEREC = Path(sys.executable).with_name("movierec")


@pytest.fixture
def home() -> Iterator[Path]:
    require_redis_server()
    path = traversable_tmpdir("movierec-workers-cli-")
    write_synthetic(path / "ds", n_ratings=5_000, seed=2)
    yield path
    WorkerPool(path).stop(grace_s=10)  # whatever the test left running, by PID
    LocalRedis(path).stop()
    EmbeddedPostgres(Paths(path)).stop()
    shutil.rmtree(path, ignore_errors=True)


def _movierec(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MOVIEREC_DATABASE_URL", "MOVIEREC_BROKER_URL",
                                                             "DAGSTER_HOME", "MOVIEREC_LANDING_DIR")}
    env |= {"MOVIEREC_HOME": str(home), "MOVIEREC_DATA_DIR": str(home / "ds")}
    proc = subprocess.run([str(MOVIEREC), "workers", *args], env=env, capture_output=True, text=True,  # noqa: S603
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_start_status_stop(home: Path) -> None:
    out = _movierec(home, "start", "-n", "2")
    assert "broker: redis://:***@127.0.0.1:" in out and "2 worker(s)" in out
    status = json.loads(_movierec(home, "status"))
    assert status["broker"]["running"] and not status["broker"]["external"]
    workers = status["workers"]
    assert [w["name"] for w in workers] == ["movierec-1", "movierec-2"] and all(w["answers"] for w in workers)
    password = LocalRedis(home).ensure_running().split(":")[2].split("@")[0]
    logs = "".join(Path(w["log"]).read_text() for w in workers)
    assert password not in out + logs and password not in json.dumps(status)
    assert "stopped 2 worker(s)" in _movierec(home, "stop")
    assert not any(pid_alive(w["pid"], "celery") for w in workers)
    assert not pid_alive(status["broker"]["pid"], REDIS_SERVER)
    assert json.loads(_movierec(home, "status"))["workers"] == []
