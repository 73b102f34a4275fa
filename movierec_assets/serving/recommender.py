"""The `Recommender`: top-N movies for a user, similar movies, and hot reload of new champions.

One request = two indexed point queries (the user's feature row, the movies they rated), the user
tower on one row (numpy replay), one matrix-vector product over all movies, a seen mask, and an
exact top N. The serving state is immutable and replaced by a single reference assignment, so
requests in flight keep the state they started with and never see a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from movierec_assets.serving.state import ServingState, StateLoader, UserSource
from movierec_assets.serving.topn import top_n

MAX_N = 100
log = logging.getLogger(__name__)


class InvalidRequest(ValueError):
    """A bad user id, movie id or N; the message says which and why."""


class NotFound(LookupError):
    """The movie is not in the served embeddings."""


class NotReady(RuntimeError):
    """No embeddings have been computed yet (materialize movie_embeddings first)."""


@dataclass(frozen=True)
class Item:
    movie_id: int
    title: str | None
    year: int | None
    genres: list[str]
    score: float | None


@dataclass(frozen=True)
class Recommendations:
    model_version: str
    cold_start: bool
    items: list[Item]
    user_id: int | None = None
    movie_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidRequest(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) <= 2**31 - 1:
        raise InvalidRequest(f"{name} must be between 0 and 2147483647, got {value}")
    return int(value)


def check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= int(n) <= MAX_N:
        raise InvalidRequest(f"n must be an integer from 1 to {MAX_N}, got {n!r}")
    return int(n)


class Recommender:
    def __init__(self, loader: StateLoader, users: UserSource, reload_every: float = 5.0) -> None:
        self.loader, self.users, self.reload_every = loader, users, reload_every
        self._reload_lock = threading.Lock()
        self._last_check = float("-inf")
        self._state: ServingState | None = None
        self.maybe_reload(force=True)

    # -- state ------------------------------------------------------------------------------------
    @property
    def state(self) -> ServingState:
        state = self._state
        if state is None:
            raise NotReady("no movie embeddings yet: materialize movie_embeddings first")
        return state

    @property
    def version(self) -> str | None:
        return self._state.version if self._state else None

    def maybe_reload(self, force: bool = False) -> bool:
        """Swap in the servable version if it changed; checks at most every `reload_every` seconds.

        The new state is built completely before one reference assignment replaces the old one.
        A failed load keeps serving the old state and is retried at the next check.
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.reload_every:
            return False
        if not self._reload_lock.acquire(blocking=force):
            return False  # another thread is already checking
        try:
            self._last_check = now
            version = self.loader.servable_version()
            if version is None or version == self.version:
                return False
            new_state = self.loader.load(version)
            self._state = new_state
            log.info("serving model version %s (%d movies)", version, len(new_state.store.movie_ids))
            return True
        except Exception:
            log.exception("reload failed; still serving %s", self.version)
            return False
        finally:
            self._reload_lock.release()

    # -- queries ----------------------------------------------------------------------------------
    def recommend(self, user_id: Any, n: Any = 10) -> Recommendations:
        """Top n unseen movies for a user; users without features get popular movies (cold_start)."""
        user_id, n = check_id(user_id, "user_id"), check_n(n)
        state = self.state
        data = self.users.lookup(user_id)
        seen = state.store.rows_of(data.seen)
        seen = seen[seen >= 0]
        if data.features is None:
            rows = _popular(state, seen, n)
            return Recommendations(state.version, True, _items(state, rows, None), user_id=user_id)
        query = state.encoder.encode(state.scaler(data.features), user_id)
        rows, scores = top_n(state.store.matrix, query, n, seen)
        return Recommendations(state.version, False, _items(state, rows, scores), user_id=user_id)

    def similar(self, movie_id: Any, n: Any = 10) -> Recommendations:
        """The n movies whose embeddings have the highest cosine with this movie's."""
        movie_id, n = check_id(movie_id, "movie_id"), check_n(n)
        state = self.state
        row = int(state.store.rows_of(np.array([movie_id]))[0])
        if row < 0:
            raise NotFound(f"movie {movie_id} is not in model version {state.version}")
        rows, scores = top_n(state.unit, state.unit[row], n, np.array([row]))
        return Recommendations(state.version, False, _items(state, rows, scores), movie_id=movie_id)

    def health(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            return {"status": "no_embeddings", "model_version": None, "embeddings_age_seconds": None}
        age = time.time() - state.store.created_at.timestamp()
        return {
            "status": "ok",
            "model_version": state.version,
            "embeddings_age_seconds": round(age, 3),
            "movies": int(len(state.store.movie_ids)),
            "dims": state.store.dims,
        }


def _popular(state: ServingState, seen_rows: np.ndarray, n: int) -> np.ndarray:
    popular = state.catalog.popular_rows
    if len(seen_rows) == 0:
        return popular[:n]
    # Only the first n + |seen| popular movies can survive the mask.
    head = popular[: n + len(seen_rows)]
    return head[~np.isin(head, seen_rows)][:n]


def _items(state: ServingState, rows: np.ndarray, scores: np.ndarray | None) -> list[Item]:
    cat, ids = state.catalog, state.store.movie_ids
    return [
        Item(int(ids[r]), cat.titles[r], cat.years[r], cat.genres[r], None if scores is None else float(scores[i]))
        for i, r in enumerate(rows.tolist())
    ]


def from_database(url: str, reload_every: float = 5.0) -> Recommender:
    """A Recommender on the real server: the champion's embeddings and user tower, live user data."""
    from movierec_assets.serving.state import PostgresStateLoader, PostgresUserSource

    return Recommender(PostgresStateLoader(url), PostgresUserSource(url), reload_every)
