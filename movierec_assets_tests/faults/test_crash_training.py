"""SIGKILL during trained_model's training: no partial model is registered or promoted, the next
run resumes from the checkpoint, and a Recommender on the old champion serves throughout."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from movierec_assets.config import paths
from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ml import registry
from movierec_assets.resources import PostgresResource
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import spawn_child, wait_go

pytestmark = pytest.mark.faults

EPOCHS = 4
KILL_AFTER_EPOCHS = 2
CHAMPION_CONFIG = {"epochs": 1, "user_layers": [16], "movie_layers": [16], "embedding": 8, "id_buckets": 1000,
                   "batch_size": 2048, "rank_users_cap": 100}


def _load_small_world(url: str, n_users: int = 300, n_movies: int = 200, per_user: int = 30) -> None:
    """Own state: a small synthetic MovieLens world as the whole history, an empty registry."""
    rng = np.random.default_rng(3)
    taste_u, taste_m = rng.normal(size=(n_users, 3)), rng.normal(size=(n_movies, 3))
    users = np.repeat(np.arange(1, n_users + 1), per_user)
    movies = np.concatenate([rng.choice(n_movies, per_user, replace=False) for _ in range(n_users)])
    score = (taste_u[users - 1] * taste_m[movies]).sum(1)
    ratings = pl.DataFrame({
        "user_id": users.astype(np.int32), "movie_id": (movies + 1).astype(np.int32),
        "rating": (np.clip(np.round(2 * (3 + score)) / 2, 0.5, 5.0)).astype(np.float32),
        "rated_at": pl.Series(rng.integers(8e14, 9e14, len(users))).cast(pl.Datetime("us", "UTC")),
    })
    genres = ["Action", "Comedy", "Drama", "Horror"]
    catalog = pl.DataFrame({
        "movie_id": np.arange(1, n_movies + 1, dtype=np.int32),
        "title": [f"Movie {i} ({1980 + i % 40})" for i in range(1, n_movies + 1)],
        "year": pl.Series([1980 + i % 40 for i in range(1, n_movies + 1)], dtype=pl.Int32),
        "genres": [[genres[i % 4]] for i in range(n_movies)],
    })
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.movies, movielens.tags")
        bulk.ingest(conn, "movielens", "movies", catalog)
        bulk.ingest(conn, "movielens", "ratings", ratings)
        conn.commit()
    with connect(url) as conn:
        conn.execute("DELETE FROM ml.model_versions")


def _registry_rows(url: str) -> list[tuple[object, ...]]:
    with connect(url) as conn:
        return conn.execute("SELECT version, status, path, metrics::text FROM ml.model_versions ORDER BY version").fetchall()


def _epochs_checkpointed(models: Path) -> int:
    done = 0
    for state in models.glob("runs/*/checkpoints/state.json"):
        try:
            done = max(done, int(json.loads(state.read_text())["epochs_done"]))
        except (ValueError, KeyError, OSError):
            continue  # being replaced right now
    return done


class _Poller(threading.Thread):
    """Asks the Recommender for recommendations non-stop, recording every answer's model version."""

    def __init__(self, recommender: object, user_id: int) -> None:
        super().__init__(daemon=True)
        self.recommender, self.user_id = recommender, user_id
        self.versions: dict[str, int] = {}
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.recommender.maybe_reload()  # type: ignore[attr-defined]
                answer = self.recommender.recommend(self.user_id, 10)  # type: ignore[attr-defined]
                assert len(answer.items) == 10
                self.versions[answer.model_version] = self.versions.get(answer.model_version, 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)


def _kill_during_next_checkpoint_save(proc: subprocess.Popen[str], models: Path) -> None:
    """SIGKILL the moment the checkpoint after epoch KILL_AFTER_EPOCHS starts being written (a .keras
    file newer than the committed state.json), i.e. inside the save whenever the 1 ms poll catches it."""
    deadline = time.monotonic() + 240
    while _epochs_checkpointed(models) < KILL_AFTER_EPOCHS and proc.poll() is None:
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)
    state = next(models.glob("runs/*/checkpoints/state.json"))
    committed = state.stat().st_mtime_ns
    while proc.poll() is None:
        assert time.monotonic() < deadline, "no further checkpoint"
        try:
            if any(f.suffix == ".keras" and f.stat().st_mtime_ns > committed for f in state.parent.iterdir()):
                break
        except FileNotFoundError:
            continue  # a file renamed under our feet
        time.sleep(0.001)
    assert proc.poll() is None, "training finished before the kill: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _torn_checkpoints(models: Path) -> list[str]:
    return [f.name for f in models.glob("runs/*/checkpoints/*.keras") if not zipfile.is_zipfile(f)]


def _kill_and_resume(fault: FaultRecord, url: str, models: Path, champion: str) -> tuple[int, dict[str, str]]:
    before = _registry_rows(url)
    versions_on_disk = {p.name for p in models.iterdir()}
    proc = wait_go(spawn_child(["train", str(EPOCHS)], url))
    _kill_during_next_checkpoint_save(proc, models)
    fault.tried += 1
    killed_at = _epochs_checkpointed(models)
    torn = _torn_checkpoints(models)
    assert _registry_rows(url) == before, "the killed run registered or promoted something"
    assert registry.current_champion(url).version == champion  # type: ignore[union-attr]
    assert {p.name for p in models.iterdir()} - versions_on_disk <= {"runs"}, "a partial model directory"

    rerun = wait_go(spawn_child(["train", str(EPOCHS)], url))
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    summary = re.search(r"^initial_epoch=.*$", out, re.MULTILINE)
    assert summary, out[-3000:]
    stats = dict(kv.split("=", 1) for kv in summary[0].split())
    assert int(stats["initial_epoch"]) >= KILL_AFTER_EPOCHS, out[-3000:]  # resumed from the checkpoint
    assert "resuming from" in out
    after = registry.get_version(url, stats["version"])
    assert after is not None and after.status == "candidate"  # registered whole; only the gate promotes
    assert registry.current_champion(url).version == champion  # type: ignore[union-attr]
    assert not list(models.glob("runs/*")), "the finished run left its checkpoints behind"
    fault.note(f"the kill left {len(torn)} torn .keras file(s) in the checkpoint dir: {torn}")
    return killed_at, stats


@pytest.mark.fault_scenario("crash mid-training", "SIGKILL inside the checkpoint save after epoch 2 of 4 (trained_model training)")
def test_sigkill_during_training(pg_url: str, fault: FaultRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec_assets.assets.features import feature_tables, scaling_stats
    from movierec_assets.assets.ml import champion_gate, trained_model
    from movierec_assets.assets.serving import movie_embeddings
    from movierec_assets.serving.online.recommender import from_database

    monkeypatch.setenv("MOVIEREC_HOME", str(traversable_tmpdir("movierec-fault-train-")))
    models = paths().models
    _load_small_world(pg_url)
    # The old champion, with its embeddings, serving.
    first = dg.materialize(
        [feature_tables, scaling_stats, trained_model, champion_gate, movie_embeddings],
        resources={"postgres": PostgresResource()},
        run_config={"ops": {"trained_model": {"config": CHAMPION_CONFIG}}},
    )
    assert first.success
    champion = registry.current_champion(pg_url)
    assert champion is not None
    recommender = from_database(pg_url, reload_every=0.2)
    assert recommender.version == champion.version
    poller = _Poller(recommender, user_id=1)
    poller.start()
    try:
        killed_at, stats = _kill_and_resume(fault, pg_url, models, champion.version)
        time.sleep(0.5)
    finally:
        poller.stop.set()
        poller.join(10)
    assert poller.errors == [], poller.errors[:3]
    assert set(poller.versions) == {champion.version} and sum(poller.versions.values()) > 20
    fault.survived += 1
    fault.note(f"killed after epoch {killed_at}/{EPOCHS}; rerun resumed at epoch {stats['initial_epoch']}; "
               f"{sum(poller.versions.values())} recommendations served from the old champion, 0 errors")
