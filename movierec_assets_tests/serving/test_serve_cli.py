"""`movierec serve` itself: the uvicorn server process over the real PostgreSQL champion answers
like the in-process Recommender, in both scoring modes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from movierec_assets_tests.serving.helpers import free_port
from movierec_assets_tests.serving.test_database import load_world, materialize, seen_by, train_champion


@contextmanager
def serve(*args: str) -> Iterator[str]:
    port = free_port()
    command = [str(Path(sys.executable).with_name("movierec")), "serve", "--port", str(port), *args]
    server = subprocess.Popen(command, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:  # "ok" or "degraded"
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"movierec serve did not come up: {server.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("scoring", ["int8", "float32"])
def test_movierec_serve_answers_like_the_recommender(pg_url: str, scoring: str) -> None:
    from movierec_assets.assets.serving import movie_embeddings
    from movierec_assets.serving.online.recommender import from_database

    load_world(pg_url)
    version = train_champion(pg_url, seed=3)
    materialize(movie_embeddings)
    rec = from_database(pg_url, reload_every=3600)
    with serve("--scoring", scoring, "--reload-every", "3600") as base, httpx.Client(base_url=base) as client:
        health = client.get("/health").json()
        assert health["model_version"] == version and health["scoring"] == scoring
        for user in range(1, 8):
            body = client.get(f"/users/{user}/recommendations", params={"n": 5}).json()
            expected = rec.recommend(user, 5)
            assert body["cold_start"] is expected.cold_start and body["model_version"] == version
            assert [i["movie_id"] for i in body["items"]] == [i.movie_id for i in expected.items], user
            assert not seen_by(user) & {i["movie_id"] for i in body["items"]}
            if not expected.cold_start:
                assert [i["score"] for i in body["items"]] == pytest.approx([i.score for i in expected.items],
                                                                            abs=1e-5)
        assert client.get("/users/1/recommendations", params={"n": 0}).status_code == 422
        assert client.get("/movies/99/similar").status_code == 404
