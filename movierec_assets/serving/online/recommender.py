"""The `Recommender`: top-N movies for a user, similar movies, and hot reload of new champions.

Requests are answered in batches (`recommend_many`, `similar_many`; see scoring.py): the users'
lookups, one tower forward pass, one matrix product over all movies, the seen masks and an exact
top N per row. `recommend` and `similar` are batches of one through the same code. The served
version is immutable and replaced by a single reference assignment, so a batch in flight keeps the
version it started with and never sees a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from movierec_assets.serving.online.candidates import recommend_users, similar_movies, warm
from movierec_assets.serving.online.served import Answer, Item, Recommendations, Served
from movierec_assets.serving.online.state import (
    PostgresStateLoader,
    ServingState,
    StateLoader,
    UserSource,
    VersionRefused,
)
from movierec_assets.serving.online.users import PostgresBatchUserSource

__all__ = ["MAX_N", "Answer", "InvalidRequest", "Item", "NotFound", "NotReady", "Recommendations", "Recommender",
           "from_database"]

MAX_N = 100
log = logging.getLogger(__name__)


class InvalidRequest(ValueError):
    """A bad user id, movie id or N; the message says which and why."""


class NotFound(LookupError):
    """The movie is not in the served embeddings."""


class NotReady(RuntimeError):
    """No embeddings have been computed yet (materialize movie_embeddings first)."""


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


Request = tuple[Any, Any]  # (id, n) as received: validated per request inside the batch


class Recommender:
    def __init__(self, loader: StateLoader, users: UserSource, reload_every: float = 5.0) -> None:
        self.loader, self.users, self.reload_every = loader, users, reload_every
        self._reload_lock = threading.Lock()
        self._last_check = float("-inf")
        self._served: Served | None = None
        self.refused: tuple[str, str] | None = None  # (version, why) of the newest version refused
        self.maybe_reload(force=True)

    # -- state ------------------------------------------------------------------------------------
    @property
    def served(self) -> Served:
        served = self._served
        if served is None:
            raise NotReady("no movie embeddings yet: materialize movie_embeddings first")
        return served

    @property
    def state(self) -> ServingState:
        return self.served.state

    @property
    def version(self) -> str | None:
        return self._served.version if self._served else None

    def maybe_reload(self, force: bool = False) -> bool:
        """Swap in the servable version if it changed; checks at most every `reload_every` seconds.

        The new version is built completely (state, padded matrices, JSON fragments) before one
        reference assignment replaces the old one. A failed load keeps serving the old version
        and is retried at the next check.
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.reload_every:
            return False
        if not self._reload_lock.acquire(blocking=force):
            return False  # another thread is already checking
        try:
            self._last_check = now
            version = self.loader.servable_version()
            if version is None or version == self.version or (self.refused and self.refused[0] == version):
                return False  # a refused version stays refused: loading it again cannot help
            new = warm(Served.build(self.loader.load(version)))
            self._served, self.refused = new, None
            log.info("serving model version %s (%d movies)", version, new.movies)
            return True
        except VersionRefused as exc:
            self.refused = (str(version), str(exc))
            log.error("%s; still serving %s", exc, self.version)
            return False
        except Exception:
            log.exception("reload failed; still serving %s", self.version)
            return False
        finally:
            self._reload_lock.release()

    # -- queries ----------------------------------------------------------------------------------
    def recommend(self, user_id: Any, n: Any = 10) -> Recommendations:
        """Top n unseen movies for a user; users without features (or, for a history-aware model,
        without ratings) get popular movies (cold_start)."""
        return _one(self.recommend_many([(user_id, n)])).recommendations()

    def similar(self, movie_id: Any, n: Any = 10) -> Recommendations:
        """The n movies whose embeddings have the highest cosine with this movie's."""
        return _one(self.similar_many([(movie_id, n)])).recommendations()

    def recommend_many(self, requests: Sequence[Request]) -> list[Answer | Exception]:
        """One answer or error per (user_id, n), in order; one model version for the whole batch.

        Invalid input fails only its own request; a failure shared by the batch (no embeddings,
        database down) is every request's error.
        """
        out: list[Answer | Exception] = [InvalidRequest("unanswered")] * len(requests)
        valid: list[tuple[int, tuple[int, int]]] = []
        for i, (user_id, n) in enumerate(requests):
            try:
                valid.append((i, (check_id(user_id, "user_id"), check_n(n))))
            except InvalidRequest as exc:
                out[i] = exc
        if valid:
            try:
                answers = recommend_users(self.served, self.users, [r for _, r in valid])
            except Exception as exc:  # noqa: BLE001 - shared by the batch: each request reports it
                answers = [exc] * len(valid)  # type: ignore[list-item]
            for (i, _), answer in zip(valid, answers, strict=True):
                out[i] = answer
        return out

    def similar_many(self, requests: Sequence[Request]) -> list[Answer | Exception]:
        """One answer or error (InvalidRequest, NotFound, NotReady) per (movie_id, n), in order."""
        out: list[Answer | Exception] = [InvalidRequest("unanswered")] * len(requests)
        try:
            served = self.served
        except NotReady as exc:
            return [exc] * len(requests)
        valid: list[tuple[int, tuple[int, int]]] = []
        for i, (movie_id, n) in enumerate(requests):
            try:
                movie_id, n = check_id(movie_id, "movie_id"), check_n(n)
                row = int(served.state.store.rows_of(np.array([movie_id]))[0])
                if row < 0:
                    raise NotFound(f"movie {movie_id} is not in model version {served.version}")
                valid.append((i, (row, n)))
            except (InvalidRequest, NotFound) as exc:
                out[i] = exc
        if valid:
            for (i, _), answer in zip(valid, similar_movies(served, [r for _, r in valid]), strict=True):
                out[i] = answer
        return out

    def health(self) -> dict[str, Any]:
        served, refused = self._served, self.refused
        why = {"refused_version": refused[0], "refused": refused[1]} if refused else {}
        if served is None:
            status = "version_refused" if refused else "no_embeddings"
            return {"status": status, "model_version": None, "embeddings_age_seconds": None, **why}
        store = served.state.store
        return {
            "status": "degraded" if refused else "ok",  # an older version still serves
            **why,
            "model_version": served.version,
            "embeddings_age_seconds": round(time.time() - store.created_at.timestamp(), 3),
            "movies": served.movies,
            "dims": store.dims,
            "scoring": served.scoring,
            "scoring_fallback": served.scoring_fallback,  # why int8 is off on this CPU; None: it is not
            "history_skipped_ids": served.history.skipped_ids,  # rated movies unknown to this version
            "history_truncated_users": served.history.truncated_users,  # histories cut to the newest N
        }


def _one(results: list[Answer | Exception]) -> Answer:
    (result,) = results
    if isinstance(result, Exception):
        raise result
    return result


def from_database(url: str, reload_every: float = 5.0) -> Recommender:
    """A Recommender on the real server: the champion's embeddings and user tower, live user data."""
    return Recommender(PostgresStateLoader(url), PostgresBatchUserSource(url), reload_every)
