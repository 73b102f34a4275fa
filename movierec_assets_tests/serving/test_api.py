"""The HTTP API on a real uvicorn (127.0.0.1): status codes, a schemathesis run with no 5xx, and hot
reload while threads hammer it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from movierec_assets.serving.online.api import create_app
from movierec_assets.serving.online.recommender import Recommender
from movierec_assets_tests.serving.helpers import COLUMNS, Hammer, live_server, make_world, publish_and_wait
from movierec_assets_tests.serving.memory import MemoryStateLoader, MemoryUserSource


def test_status_codes() -> None:
    world = make_world()
    movie = int(world.movie_ids[3])
    with TestClient(create_app(world.recommender)) as client:
        ok = client.get("/users/1/recommendations", params={"n": 5})
        assert ok.status_code == 200
        body = ok.json()
        assert len(body["items"]) == 5 and body["cold_start"] is False and body["model_version"] == "v1"
        assert set(body["items"][0]) == {"movie_id", "title", "year", "genres", "score"}
        assert client.get("/users/424242/recommendations").json()["cold_start"] is True
        assert client.get(f"/movies/{movie}/similar?n=3").status_code == 200
        assert client.get("/movies/0/similar").status_code == 404  # ids start at 1: unknown movie
        for bad in ("/users/-1/recommendations", "/users/abc/recommendations", "/users/1.5/recommendations",
                    "/users/99999999999/recommendations", "/users/1/recommendations?n=0",
                    "/users/1/recommendations?n=101", "/users/1/recommendations?n=ten",
                    f"/movies/{movie}/similar?n=1000", "/movies/-4/similar",
                    "/users/1;DROP%20TABLE%20ml.movie_embeddings/recommendations",
                    "/users/1'%20OR%201=1--/recommendations", "/users/1/recommendations?n=" + "9" * 5000,
                    "/users/%00/recommendations", "/users/1e3/recommendations", "/movies/NaN/similar",
                    "/movies/inf/similar", "/users/1/recommendations?n=nan"):
            assert client.get(bad).status_code == 422, bad
        health = client.get("/health").json()
        assert health["model_version"] == "v1" and 0 <= health["embeddings_age_seconds"] < 600
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_no_embeddings_is_503_and_health_says_so() -> None:
    factory = lambda: Recommender(MemoryStateLoader(), MemoryUserSource(COLUMNS), 0.0)  # noqa: E731
    with TestClient(create_app(factory)) as client:
        assert client.get("/users/1/recommendations").status_code == 503
        assert client.get("/health").json()["status"] == "no_embeddings"


def test_schemathesis_finds_no_server_errors() -> None:
    world = make_world()
    app = create_app(world.recommender)
    schema = schemathesis.openapi.from_dict(app.openapi())
    with live_server(app) as base:
        statuses: Counter[int] = Counter()
        for result in schema.get_all_operations():
            operation = result.ok()
            modes = [schemathesis.GenerationMode.POSITIVE]
            if operation.definition.raw.get("parameters"):  # nothing to break on /health
                modes.append(schemathesis.GenerationMode.NEGATIVE)
            for mode in modes:

                @settings(max_examples=12, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case: schemathesis.Case) -> None:
                    response = case.call(base_url=base, timeout=10)
                    statuses[response.status_code] += 1
                    assert response.status_code < 500, (case.path, case.path_parameters, case.query)

                run()
    assert statuses[200] > 0 and statuses[422] > 0


@pytest.mark.parametrize("clients", [8])
def test_hot_reload_while_requests_are_in_flight(clients: int) -> None:
    world = make_world(n_movies=2000)
    app = create_app(lambda: world.recommender(reload_every=0.05), reload_poll_s=0.05)

    def path(worker: int, i: int) -> str:
        return (f"/users/{1 + (worker + i) % 41}/recommendations?n=10" if i % 3
                else f"/movies/{int(world.movie_ids[i % 2000])}/similar?n=5")

    def served(version: str) -> int:
        return sum(1 for _, body in hammer.answers if body["model_version"] == version)

    def wait_for(count: Callable[[], int], at_least: int) -> None:
        deadline = time.monotonic() + 10
        while count() < at_least:
            assert time.monotonic() < deadline and not hammer.failures, hammer.failures
            time.sleep(0.02)

    with live_server(app) as base, Hammer(base, clients, path) as hammer:
        for version in ("v2", "v3"):
            wait_for(lambda: len(hammer.answers), len(hammer.answers) + 30)  # flowing on the old version
            publish_and_wait(world, base, version)
        wait_for(lambda: served("v3"), served("v3") + 30)
    assert hammer.failures == []
    assert served("v1") > 0 and served("v3") > 0
