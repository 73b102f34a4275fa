"""A lean ASGI path for the hot, well-formed requests; everything else goes through FastAPI.

FastAPI's middleware, routing, parameter validation and dependency solving cost more CPU per
request than the batched answer itself. `FastPathAPI` answers only requests it can recognise exactly:
`GET /users/{digits}/recommendations` with no query or exactly `n={digits}`, and `GET /health`
with no query (its status from the cached checks of health.py). Ids above 2**31-1, n outside 1..100, any other parameter, encoding or method fall
through to the FastAPI routes, which stay the documented API (OpenAPI, 422 bodies). Answers and
errors are the same bytes and statuses the routes give (a test compares the two paths).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

from movierec_assets.db.connect import DatabaseUnavailable
from movierec_assets.serving.online.recommender import MAX_N, InvalidRequest, NotFound, NotReady

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

INT32_MAX = 2**31 - 1
_USER = re.compile(r"/users/([0-9]{1,10})/recommendations")
_N = re.compile(rb"n=([0-9]{1,3})")
_JSON = [(b"content-type", b"application/json")]
_STATUS = ((NotFound, 404), (InvalidRequest, 422), (NotReady, 503), (DatabaseUnavailable, 503))


def _user_request(scope: Scope) -> tuple[int, int] | None:
    """(user_id, n) when the request is one the fast path answers exactly like the route; else None."""
    match = _USER.fullmatch(scope["path"])
    if match is None:
        return None
    query = scope.get("query_string", b"")
    n = 10
    if query:
        q = _N.fullmatch(query)
        if q is None:
            return None
        n = int(q.group(1))
    user_id = int(match.group(1))
    if user_id > INT32_MAX or not 1 <= n <= MAX_N:
        return None  # let FastAPI produce its 422
    return user_id, n


async def _send(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _detail(exc: Exception) -> bytes:
    """The body FastAPI's HTTPException handler renders (same separators)."""
    return json.dumps({"detail": str(exc)}, ensure_ascii=False, separators=(",", ":")).encode()


class FastPathAPI(FastAPI):
    """FastAPI that answers the hot requests before its middleware stack (six ASGI layers per
    request); everything else goes the documented way."""

    fast_path: bool = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.fast_path and scope["type"] == "http" and scope["method"] == "GET"):
            return await super().__call__(scope, receive, send)
        if scope["path"] == "/health" and not scope.get("query_string"):
            return await _send(send, *self.state.health_response())  # status from the cached checks
        request = _user_request(scope)
        if request is None:
            return await super().__call__(scope, receive, send)
        try:
            answer = await self.state.users.submit(request)
        except Exception as exc:
            for kind, status in _STATUS:
                if isinstance(exc, kind):
                    return await _send(send, status, _detail(exc))
            raise
        await _send(send, 200, answer.to_json())
