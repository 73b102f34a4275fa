"""Shared setup for serving tests: an in-memory Recommender on random embeddings, a live uvicorn, a
tiny trained champion on the real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from movierec_assets.serving.online.recommender import Recommender
from movierec_assets.serving.online.state import ServingState
from movierec_assets_tests.ports import free_port
from movierec_assets_tests.serving.memory import (
    MemoryStateLoader,
    MemoryUserSource,
    random_state,
    random_tower,
)

COLUMNS = [f"f{i}" for i in range(6)]
DIMS = 8
SCORE_ATOL = 1e-6  # scores of the same answer computed in different batches (movies and order: exact)


@dataclass
class World:
    loader: MemoryStateLoader
    users: MemoryUserSource
    movie_ids: np.ndarray
    rng: np.random.Generator

    def new_state(self, version: str) -> ServingState:
        tower = random_tower(self.rng, len(COLUMNS), [16], DIMS)
        return random_state(version, self.movie_ids, DIMS, tower, COLUMNS, self.rng)

    def recommender(self, reload_every: float = 0.0) -> Recommender:
        return Recommender(self.loader, self.users, reload_every)


def make_world(n_movies: int = 300, n_users: int = 40, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(np.arange(1, 10 * n_movies), n_movies, replace=False))
    users = MemoryUserSource(COLUMNS)
    for u in range(1, n_users + 1):
        users.features[u] = rng.standard_normal(len(COLUMNS)).astype(np.float32)
        users.seen[u] = rng.choice(movie_ids, int(rng.integers(0, 60)), replace=False)
    users.seen[n_users + 1] = movie_ids[:5]  # rated movies, no features yet: cold start
    world = World(MemoryStateLoader(), users, movie_ids, rng)
    world.loader.publish(world.new_state("v1"))
    return world


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class Hammer:
    """`clients` threads GET `path(worker, i)` in a loop until the block ends; every 200 answer is
    kept as (path, body), anything else as a failure."""

    def __init__(self, base: str, clients: int, path: Callable[[int, int], str]) -> None:
        self.base, self.path = base, path
        self.answers: list[tuple[str, dict]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(w,)) for w in range(clients)]

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                path = self.path(worker, i)
                try:
                    response = client.get(path)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {exc!r}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{path}: {response.status_code}")
                else:
                    self.answers.append((path, response.json()))

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def publish_and_wait(world: World, base: str, version: str, timeout_s: float = 10.0) -> None:
    """A new champion's embeddings appear; returns once the server reports serving them."""
    world.loader.publish(world.new_state(version))
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{base}/health").json()["model_version"] != version:
        assert time.monotonic() < deadline, f"{version} never served"
        time.sleep(0.02)


def brute_force(matrix: np.ndarray, query: np.ndarray, n: int, exclude_rows: set[int]) -> list[int]:
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    rows = [r for r in range(len(scores)) if r not in exclude_rows]
    return sorted(rows, key=lambda r: (-scores[r], r))[:n]


Factory = Callable[[], Recommender]


def assert_same_answer(got: Any, expected: Any) -> None:
    """Same model version, cold start flag, ids, movies and their order exactly; scores within
    SCORE_ATOL. Takes `Recommendations` or their JSON dicts."""
    a, b = (x.to_dict() if hasattr(x, "to_dict") else x for x in (got, expected))
    scores = [[item["score"] for item in x["items"]] for x in (a, b)]
    strip = [{**x, "items": [{k: v for k, v in item.items() if k != "score"} for item in x["items"]]} for x in (a, b)]
    assert strip[0] == strip[1]
    assert [s is None for s in scores[0]] == [s is None for s in scores[1]]
    assert np.allclose([s or 0.0 for s in scores[0]], [s or 0.0 for s in scores[1]], rtol=0, atol=SCORE_ATOL), scores


Rating = tuple[int, int, float]  # (user, movie, rating)


def fit_and_promote(url: str, model: Any, m: Any, stats: Any, rows: list[Rating],
                    extra: Callable[[np.ndarray], dict[str, Any]] | None = None) -> str:
    """Fit a tiny model on `rows` (3 eager epochs; `m`: the FeatureMatrices, `extra`: more inputs
    from the rows' user ids), publish it as trained_model does and make it the champion (tests
    want a champion whatever the gate says; the gate has its own tests). Returns its version."""
    from movierec_assets.ml import registry, two_tower  # Keras: only the tests that train import it
    from movierec_assets.ml.training_job import publish

    u = np.searchsorted(m.user_ids, [r[0] for r in rows])
    v = np.searchsorted(m.movie_ids, [r[1] for r in rows])
    inputs = {two_tower.USER_FEATURES: m.user_matrix[u], two_tower.MOVIE_FEATURES: m.movie_matrix[v],
              two_tower.USER_ID: m.user_ids[u], two_tower.MOVIE_ID: m.movie_ids[v],
              **(extra(m.user_ids[u]) if extra else {})}
    model.run_eagerly = True  # a few examples: tracing a tf.function would cost more than the training
    model.fit(inputs, np.array([r[2] for r in rows], np.float32), epochs=3, verbose=0)
    version = publish(url, model, stats, {"holdout_rmse": 1.0}).version
    registry.promote(url, version)
    return version
