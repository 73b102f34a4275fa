"""Shared setup for serving tests: an in-memory Recommender on random embeddings, a live uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import uvicorn
from fastapi import FastAPI

from movierec_assets.serving.memory import MemoryStateLoader, MemoryUserSource, random_state, random_tower
from movierec_assets.serving.recommender import Recommender
from movierec_assets.serving.state import ServingState

COLUMNS = [f"f{i}" for i in range(6)]
DIMS = 8


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def brute_force(matrix: np.ndarray, query: np.ndarray, n: int, exclude_rows: set[int]) -> list[int]:
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    rows = [r for r in range(len(scores)) if r not in exclude_rows]
    return sorted(rows, key=lambda r: (-scores[r], r))[:n]


Factory = Callable[[], Recommender]
