"""Micro-batching on a real uvicorn over real HTTP: batched answers equal unbatched ones exactly,
errors stay with their own request, the fast path answers like the FastAPI routes, and a reload
during batching serves every request from one consistent model version."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from movierec_assets.serving.online.api import RecommendationsOut, create_app
from movierec_assets.serving.online.batcher import Batcher
from movierec_assets.serving.online.candidates import recommend_users
from movierec_assets.serving.online.recommender import InvalidRequest, NotFound, Recommendations, Recommender
from movierec_assets.serving.online.served import Served
from movierec_assets_tests.serving.helpers import (
    COLUMNS,
    Hammer,
    assert_same_answer,
    live_server,
    make_world,
    publish_and_wait,
)
from movierec_assets_tests.serving.memory import MemoryStateLoader, MemoryUserSource


def as_json(result: Recommendations) -> dict:
    return RecommendationsOut.model_validate(result.to_dict()).model_dump(mode="json")


async def fetch_all(base: str, paths: list[str]) -> list[httpx.Response]:
    """Every path at once (one connection each), so the server sees them concurrently."""
    limits = httpx.Limits(max_connections=len(paths))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.get(p) for p in paths))


def test_batched_equals_unbatched_over_http() -> None:
    world = make_world(n_movies=3000, n_users=60)
    app = create_app(world.recommender, max_wait_s=0.05)  # a long window: requests really coalesce
    paths = [f"/users/{u}/recommendations?n={1 + u % 25}" for u in range(1, 62)] + \
            [f"/users/{u}/recommendations" for u in (5, 6, 999_999)]
    with live_server(app) as base:
        responses = asyncio.run(fetch_all(base, paths))
        batcher = app.state.users
        rec = app.state.recommender
        assert batcher.items == len(paths) and batcher.batches < len(paths) / 4, (batcher.batches, batcher.items)
        for path, response in zip(paths, responses, strict=True):
            assert response.status_code == 200, path
            user_id = int(path.split("/")[2])
            n = int(path.split("n=")[1]) if "n=" in path else 10
            assert_same_answer(response.json(), as_json(rec.recommend(user_id, n)))  # same items and order
        assert responses[-1].json()["cold_start"] is True and responses[-4].json()["cold_start"] is True


def test_fast_path_answers_like_the_fastapi_routes() -> None:
    world = make_world(n_movies=500)
    paths = ["/users/3/recommendations", "/users/3/recommendations?n=7", "/users/0041/recommendations?n=100",
             "/users/41/recommendations?n=3", "/users/2147483647/recommendations", "/health",
             "/users/2147483648/recommendations", "/users/3/recommendations?n=0", "/users/3/recommendations?n=101",
             "/users/3/recommendations?n=5&x=1", "/users/-3/recommendations", "/users/3/recommendations?n=+5"]
    results = []
    for fast in (True, False):
        app = create_app(world.recommender, fast_path=fast)
        with live_server(app) as base:
            results.append([httpx.get(base + p, timeout=10) for p in paths])
    for path, a, b in zip(paths, *results, strict=True):
        assert a.status_code == b.status_code, path
        body_a, body_b = a.json(), b.json()
        if path == "/health":
            body_a.pop("embeddings_age_seconds"), body_b.pop("embeddings_age_seconds")
        assert body_a == body_b, path
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json", path
        if path != "/health":
            assert a.content == b.content, path
    empty = lambda: Recommender(MemoryStateLoader(), MemoryUserSource(COLUMNS), 0.0)  # noqa: E731
    answers = []
    for fast in (True, False):  # no embeddings yet: the same 503 from both paths
        with live_server(create_app(empty, fast_path=fast)) as base:
            answers.append(httpx.get(base + "/users/1/recommendations", timeout=10))
    assert answers[0].status_code == answers[1].status_code == 503 and answers[0].content == answers[1].content


def test_errors_stay_with_their_own_request() -> None:
    world = make_world(n_movies=800)
    rec = world.recommender()
    good = rec.recommend(4, 6)
    mixed = rec.recommend_many([(4, 6), (-1, 5), ("x", 5), (4, 0), (True, 3), (12, 101), (41, 5)])
    assert isinstance(mixed[0], Exception) is False
    assert_same_answer(as_json(mixed[0].recommendations()), as_json(good))
    assert all(isinstance(r, InvalidRequest) for r in mixed[1:6])
    assert_same_answer(mixed[6].recommendations(), rec.recommend(41, 5))
    unknown = int(world.movie_ids.max()) + 1
    sims = rec.similar_many([(int(world.movie_ids[0]), 3), (unknown, 3), (-2, 3), (int(world.movie_ids[1]), 4)])
    assert isinstance(sims[1], NotFound) and isinstance(sims[2], InvalidRequest)
    assert_same_answer(sims[3].recommendations(), rec.similar(int(world.movie_ids[1]), 4))

    app = create_app(world.recommender, max_wait_s=0.05)
    paths = [f"/movies/{int(m)}/similar?n=4" for m in world.movie_ids[:20]] + \
            [f"/movies/{unknown + k}/similar" for k in range(5)] + [f"/users/{u}/recommendations" for u in range(1, 20)]
    with live_server(app) as base:
        responses = asyncio.run(fetch_all(base, paths))
        assert app.state.similar.batches < 25 / 4
    codes = [r.status_code for r in responses]
    assert codes == [200] * 20 + [404] * 5 + [200] * 19
    for m, r in zip(world.movie_ids[:20], responses, strict=False):
        assert_same_answer(r.json(), as_json(rec.similar(int(m), 4)))


def test_a_failing_batch_fails_each_request_and_the_batcher_carries_on() -> None:
    calls: list[int] = []

    def run(items: list[int]) -> list[int | Exception]:
        calls.append(len(items))
        if 13 in items:
            raise RuntimeError("boom")
        return [ValueError(str(i)) if i < 0 else i * 2 for i in items]

    async def main() -> list:
        batcher = Batcher(run, max_wait_s=0.02)
        try:
            first = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3)), return_exceptions=True)
            second = await asyncio.gather(*(batcher.submit(i) for i in (13, 4)), return_exceptions=True)
            third = await batcher.submit(5)
            return [first, second, third]
        finally:
            batcher.close()

    first, second, third = asyncio.run(main())
    assert first[0] == 2 and isinstance(first[1], ValueError) and first[2] == 6
    assert all(isinstance(r, RuntimeError) for r in second) and third == 10
    assert calls == [3, 2, 1]


@pytest.mark.parametrize("clients", [12])
def test_reload_while_batching_serves_one_consistent_version(clients: int) -> None:
    world = make_world(n_movies=2000)
    app = create_app(lambda: world.recommender(reload_every=0.05), reload_poll_s=0.05, max_wait_s=0.005)
    def path(worker: int, i: int) -> str:
        return f"/users/{1 + (worker * 7 + i) % 41}/recommendations?n={1 + i % 12}"

    def answered(version: str) -> None:  # some answers from this version (not a fixed sleep: CI is shared)
        deadline = time.monotonic() + 10
        while sum(body["model_version"] == version for _, body in list(hammer.answers)) < 10:
            assert time.monotonic() < deadline and not hammer.failures, (version, hammer.failures)
            time.sleep(0.02)

    with live_server(app) as base, Hammer(base, clients, path) as hammer:
        for old, version in (("v1", "v2"), ("v2", "v3")):
            answered(old)
            publish_and_wait(world, base, version)
        answered("v3")
    assert app.state.users.batches < app.state.users.items  # requests really were batched
    failures, seen = hammer.failures, hammer.answers
    assert failures == []
    versions = Counter(body["model_version"] for _, body in seen)
    assert versions["v1"] and versions["v2"] and versions["v3"], versions
    served = {v: Served.build(world.loader.states[v]) for v in versions}
    for path, body in seen[::7]:  # every answer matches its own version's model, alone
        user_id, n = int(path.split("/")[2]), int(path.split("n=")[1])
        (expected,) = recommend_users(served[body["model_version"]], world.users, [(user_id, n)])
        assert_same_answer(body, as_json(expected.recommendations()))
    assert np.all([len(b["items"]) == int(p.split("n=")[1]) for p, b in seen])


def test_dense_id_table_agrees_with_the_store() -> None:
    world = make_world(n_movies=700)
    served = Served.build(world.loader.states["v1"])
    assert served.row_of_id is not None
    ids = np.concatenate([world.movie_ids, [0, -5, 10**9, int(world.movie_ids.max()) + 1], np.arange(0, 8000, 3)])
    assert np.array_equal(served.rows_of(ids), served.state.store.rows_of(ids))
