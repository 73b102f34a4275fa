"""The HTTP API (FastAPI): recommendations, similar movies, health; hot reload in the background.

Bad parameters are rejected by FastAPI's validation (422) before any work; an unknown movie is a
404; no embeddings yet is a 503. /health is a 503 as well then, and while the database is
unreachable (a background check, see health.py), so a load balancer stops sending traffic.
Handlers only queue their request: a `Batcher` coalesces the concurrent ones and answers them with
one matrix product on a worker thread (per-request numpy on the event loop saturated at ~150
req/s). Answers are rendered to JSON by string assembly from per-movie fragments and returned as
bytes; the response models below still document them, and a test checks the bytes validate against
them. Reloads run on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from movierec_assets.db.connect import DatabaseUnavailable
from movierec_assets.serving.online.batcher import MAX_BATCH, MAX_WAIT_S, Batcher
from movierec_assets.serving.online.fastpath import INT32_MAX, FastPathAPI
from movierec_assets.serving.online.health import DatabaseProbe, health
from movierec_assets.serving.online.recommender import (
    MAX_N,
    Answer,
    InvalidRequest,
    NotFound,
    NotReady,
    Recommender,
)

RELOAD_POLL_S = 1.0


class ItemOut(BaseModel):
    movie_id: int
    title: str | None
    year: int | None
    genres: list[str]
    score: float | None


class RecommendationsOut(BaseModel):
    model_version: str
    cold_start: bool
    items: list[ItemOut]
    user_id: int | None = None
    movie_id: int | None = None


class HealthOut(BaseModel):
    status: str
    model_version: str | None
    embeddings_age_seconds: float | None
    movies: int | None = None
    dims: int | None = None
    scoring: str | None = None  # "int8" (candidates re-ranked exactly) or "float32"
    database: str | None = None  # "ok" or "unreachable"; None when users come from memory
    scoring_fallback: str | None = None  # why the model scores in float32 although int8 was asked for
    detail: str | None = None  # what is wrong, when status is not "ok"
    refused_version: str | None = None  # the servable version this server refused to load
    refused: str | None = None  # why (e.g. the model's scaling_stats.parquet is missing)
    history_skipped_ids: int | None = None  # rated movies unknown to the served version, skipped in histories
    history_truncated_users: int | None = None  # histories longer than the model's N, cut to the newest N
    model_data_end: str | None = None  # ml.model_versions.data_end of the served version (ISO, UTC)
    newest_rating_at: str | None = None  # the newest rating loaded: of the newest landed day, else the history
    model_data_age_hours: float | None = None  # newest_rating_at - model_data_end (0: the model saw them all)


N = Annotated[int, Query(ge=1, le=MAX_N, description="How many movies to return")]
UserId = Annotated[int, Path(ge=0, le=INT32_MAX)]
MovieId = Annotated[int, Path(ge=0, le=INT32_MAX)]


def create_app(recommender_factory: Callable[[], Recommender], reload_poll_s: float = RELOAD_POLL_S, *,
               max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S, batch_workers: int = 1,
               fast_path: bool = True, database_url: str | None = None, scoring: str | None = None) -> FastAPI:
    """The API around a Recommender built at startup; a background task polls for new champions.

    Concurrent requests are coalesced into batches of up to `max_batch`, waiting at most
    `max_wait_s` for company, on `batch_workers` threads. `fast_path` answers well-formed hot
    requests without FastAPI's per-request machinery (see fastpath.py). With `database_url`,
    /health also reports that database (503 while unreachable; see health.py); `scoring` is the
    mode asked for, so /health can report a fallback to float32.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recommender = await run_in_threadpool(recommender_factory)
        app.state.recommender = recommender
        _freeze_heap(collect=True)
        options = {"max_batch": max_batch, "max_wait_s": max_wait_s, "workers": batch_workers}
        app.state.users = Batcher(recommender.recommend_many, name="users", **options)
        app.state.similar = Batcher(recommender.similar_many, name="similar", **options)
        probe = None
        if database_url:  # reachability, and the served version's data age (see health.py)
            probe = await run_in_threadpool(DatabaseProbe(database_url, served_version=lambda: recommender.version).start)
        app.state.probe = probe
        app.state.health_response = lambda: _health_response(recommender, probe, scoring)
        task = asyncio.create_task(_reload_loop(recommender, reload_poll_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app.state.users.close()
            app.state.similar.close()
            if probe is not None:
                await run_in_threadpool(probe.close)

    app = FastPathAPI(title="movierec", version="1", lifespan=lifespan,
                      description="Two-tower movie recommendations from the champion model.")
    app.fast_path = fast_path

    @app.get("/users/{user_id}/recommendations", response_model=RecommendationsOut,
             responses={503: {"description": "no embeddings yet"}})
    async def user_recommendations(request: Request, user_id: UserId, n: N = 10) -> Response:
        return await _respond(request.app.state.users, (user_id, n))

    @app.get("/movies/{movie_id}/similar", response_model=RecommendationsOut,
             responses={404: {"description": "unknown movie"}, 503: {"description": "no embeddings yet"}})
    async def similar_movies(request: Request, movie_id: MovieId, n: N = 10) -> Response:
        return await _respond(request.app.state.similar, (movie_id, n))

    @app.get("/health", response_model=HealthOut,
             responses={503: {"model": HealthOut, "description": "no embeddings yet, or the database is unreachable"}})
    async def health_route(request: Request) -> Response:
        status, body = request.app.state.health_response()
        return Response(body, status_code=status, media_type="application/json")

    return app


async def _respond(batcher: Batcher[tuple[int, int], Answer], request: tuple[int, int]) -> Response:
    try:
        answer = await batcher.submit(request)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidRequest as exc:
        raise HTTPException(422, str(exc)) from None
    except (NotReady, DatabaseUnavailable) as exc:
        raise HTTPException(503, str(exc)) from None
    return Response(answer.to_json(), media_type="application/json")


def _health_response(recommender: Recommender, probe: DatabaseProbe | None, scoring: str | None) -> tuple[int, bytes]:
    """(status, JSON body) of /health; the database state is the probe's last background check."""
    status, body = health(recommender, probe, scoring)
    return status, HealthOut(**body).model_dump_json().encode()


def _freeze_heap(collect: bool = False) -> None:
    """Moves everything alive (the served version: catalog lists, fragments) out of the cyclic GC's
    reach, so full collections stop re-scanning it and pausing requests. Refcounting still frees
    a replaced version. (A full collection first only at startup: it would pause requests.)"""
    if collect:
        gc.collect()
    gc.freeze()


async def _reload_loop(recommender: Recommender, poll_s: float) -> None:
    while True:
        await asyncio.sleep(poll_s)
        if await run_in_threadpool(recommender.maybe_reload):
            _freeze_heap()
