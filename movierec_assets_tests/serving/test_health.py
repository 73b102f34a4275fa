"""/health tells the truth: 503 naming the database while it is down (a real stop of the embedded
server under a running `movierec serve`), 200 again once it is back; a float32 fallback is reported;
a version refused (its scaling stats missing) is named, in /health and the log.

The restart test uses its OWN embedded server (own MOVIEREC_HOME), never the session's.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from movierec_assets.config import Paths
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import apply_migrations
from movierec_assets.serving.online.api import create_app
from movierec_assets.serving.online.health import DatabaseProbe
from movierec_assets.serving.online.recommender import Recommender
from movierec_assets.serving.online.served import use_int8
from movierec_assets.serving.online.state import ServingState, VersionRefused, model_stats
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.serving.helpers import COLUMNS, make_world
from movierec_assets_tests.serving.memory import MemoryStateLoader, MemoryUserSource
from movierec_assets_tests.serving.test_database import load_world, materialize, train_champion
from movierec_assets_tests.serving.test_serve_cli import serve


@pytest.fixture()
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedPostgres, str]]:
    home = traversable_tmpdir("movierec-health-pg-")
    server = EmbeddedPostgres(Paths(home))
    url = server.ensure_running()
    apply_migrations(url)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", url)
    yield server, url
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


def _wait_for(base: str, path: str, status: int, timeout_s: float = 20) -> tuple[httpx.Response, float]:
    """The first answer with `status`, and how long it took to arrive."""
    started = time.monotonic()
    while True:
        response = httpx.get(base + path, timeout=5)
        if response.status_code == status:
            return response, time.monotonic() - started
        assert time.monotonic() - started < timeout_s, f"{path} still {response.status_code}: {response.text}"
        time.sleep(0.1)


def test_health_follows_a_real_database_stop_and_start(own_server: tuple[EmbeddedPostgres, str]) -> None:
    from movierec_assets.assets.serving import movie_embeddings

    server, url = own_server
    load_world(url)
    version = train_champion(url, seed=3)
    materialize(movie_embeddings)
    with serve("--reload-every", "3600") as base:
        up = httpx.get(f"{base}/health").json()
        serving = up["status"]  # "ok", or "degraded" where int8 falls back to float32 on this CPU
        assert serving in ("ok", "degraded") and (up["database"], up["model_version"]) == ("ok", version), up
        assert httpx.get(f"{base}/users/1/recommendations").status_code == 200
        server.stop()
        down, took = _wait_for(base, "/health", 503)
        assert took < 5, f"/health noticed the stop after {took:.1f} s"
        body = down.json()
        assert body["status"] == "database_unreachable" and body["database"] == "unreachable", body
        assert "PostgreSQL at 127.0.0.1" in body["detail"] and url.split("@")[0].split(":")[-1] not in body["detail"]
        routed = httpx.get(f"{base}/health", params={"via": "fastapi"})  # a query: the FastAPI route answers
        assert routed.status_code == 503 and routed.json()["database"] == "unreachable"
        started = time.perf_counter()
        for _ in range(50):  # cached: no request waits for the dead database
            assert httpx.get(f"{base}/health", timeout=2).status_code == 503
        assert (time.perf_counter() - started) / 50 < 0.1
        assert httpx.get(f"{base}/users/1/recommendations").status_code == 503
        assert server.ensure_running() == url  # same port: the URL the server holds stays valid
        back, _ = _wait_for(base, "/health", 200)
        assert back.json()["status"] == serving and back.json()["database"] == "ok"
        _wait_for(base, "/users/1/recommendations", 200)


def test_probe_reports_a_dead_port_quickly() -> None:
    probe = DatabaseProbe("postgresql://movierec:pw@127.0.0.1:9/movierec")  # discard port: refused
    started = time.monotonic()
    error = probe.check()
    assert error is not None and "127.0.0.1:9/movierec" in error and "pw" not in error.split("movierec")[0]
    assert time.monotonic() - started < 3 and probe.status() == error


def test_no_embeddings_is_503_on_both_paths() -> None:
    empty = lambda: Recommender(MemoryStateLoader(), MemoryUserSource(COLUMNS), 0.0)  # noqa: E731
    for fast in (True, False):
        with TestClient(create_app(empty, fast_path=fast)) as client:
            response = client.get("/health")
            assert response.status_code == 503 and response.json()["status"] == "no_embeddings"
            assert "movie_embeddings" in response.json()["detail"]


def test_a_float32_fallback_is_reported_as_degraded() -> None:
    world = make_world(n_movies=300)
    use_int8(False)  # the served version scores in float32, as after a failed int8 exactness check
    try:
        with TestClient(create_app(world.recommender, scoring="int8")) as client:
            response = client.get("/health")
    finally:
        use_int8(True)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded" and body["scoring"] == "float32"
    assert "float32" in body["scoring_fallback"] and body["detail"] == body["scoring_fallback"]
    assert body["database"] is None  # users from memory: no database to check


def test_a_model_without_its_scaling_stats_is_refused_naming_the_file(tmp_path: Path) -> None:
    """No fallback to today's features.scaling_stats: they are not what the model was trained with."""
    with pytest.raises(VersionRefused) as refused:
        model_stats("v9", str(tmp_path))
    assert str(tmp_path / "scaling_stats.parquet") in str(refused.value) and "v9" in str(refused.value)


class _RefusingLoader(MemoryStateLoader):
    """Publishes like the real loader, but refuses the versions in `refuse` as a missing stats file does."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse

    def load(self, version: str) -> ServingState:
        self.loads += 1
        if version in self.refuse:
            raise VersionRefused(f"model version {version}: /models/{version}/scaling_stats.parquet is missing")
        return self.states[version]


def test_a_refused_version_is_named_in_health_and_the_log_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    world = make_world(n_movies=300)
    loader = _RefusingLoader({"v2"})
    loader.publish(world.new_state("v1"))
    rec = Recommender(loader, world.users, 0.0)
    loader.publish(world.new_state("v2"))
    with caplog.at_level(logging.ERROR, logger="movierec_assets.serving.online.recommender"):
        assert rec.maybe_reload(force=True) is False
    assert rec.version == "v1"  # the old version keeps serving
    assert "v2/scaling_stats.parquet is missing" in caplog.text and "still serving v1" in caplog.text
    loads = loader.loads
    assert rec.maybe_reload(force=True) is False and loader.loads == loads  # refused once, not reloaded
    for fast in (True, False):
        with TestClient(create_app(lambda: rec, fast_path=fast)) as client:
            response = client.get("/health")
        body = response.json()
        assert response.status_code == 200 and body["status"] == "degraded" and body["model_version"] == "v1"
        assert body["refused_version"] == "v2" and "scaling_stats.parquet is missing" in body["detail"]
    loader.publish(world.new_state("v3"))  # a good version clears the refusal
    assert rec.maybe_reload(force=True) is True and rec.health()["status"] == "ok" and rec.refused is None


def test_nothing_servable_but_a_refused_version_is_503() -> None:
    world = make_world(n_movies=300)
    loader = _RefusingLoader({"v1"})
    loader.publish(world.new_state("v1"))
    with TestClient(create_app(lambda: Recommender(loader, world.users, 0.0))) as client:
        response = client.get("/health")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "version_refused"
    assert body["refused_version"] == "v1" and "scaling_stats.parquet is missing" in body["detail"]
