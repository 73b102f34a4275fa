"""What `GET /health` answers: 200 only while recommendations can be answered.

The database is checked by a background thread (`DatabaseProbe`): `SELECT 1` every `every_s`
seconds on one kept connection, reconnecting with a bounded connect time when it breaks. /health
only reads the last result, so it never waits on the database and costs the same under load. A
result older than a check period plus the time limit counts as unreachable (a hung server).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from movierec_assets.db.connect import one_line, server_of
from movierec_assets.db.url import libpq_params

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
CHECK_TIMEOUT_S = 2  # libpq's connect_timeout (whole seconds, at least 2)


class DatabaseProbe:
    """The database's reachability as of the last check, refreshed in the background."""

    def __init__(self, url: str, every_s: float = CHECK_EVERY_S, timeout_s: int = CHECK_TIMEOUT_S) -> None:
        self.url, self.every_s, self.timeout_s = url, every_s, max(2, int(timeout_s))
        self._conn: psycopg.Connection[Any] | None = None
        self._checked_at = float("-inf")
        self._error: str | None = "not checked yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DatabaseProbe:
        """Checks once now (so the first answer is true), then every `every_s` seconds."""
        self.check()
        self._thread = threading.Thread(target=self._loop, name="movierec-db-probe", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + self.every_s + 1)
        self._drop()

    def status(self) -> str | None:
        """None while the database answers; else why not (never the password)."""
        age = time.monotonic() - self._checked_at
        if self._error is None and age > self.every_s + self.timeout_s + 1:
            return f"PostgreSQL at {server_of(self.url)} has not answered for {age:.0f} s"
        return self._error

    def check(self) -> str | None:
        """One `SELECT 1` (connecting first if needed); records and returns the error, if any."""
        try:
            if self._conn is None or self._conn.closed:
                params = {**libpq_params(self.url), "connect_timeout": str(self.timeout_s),
                          "application_name": "movierec-health"}
                self._conn = psycopg.connect(self.url, autocommit=True, **params)
            self._conn.execute("SELECT 1").fetchone()
            error = None
        except psycopg.Error as exc:
            self._drop()
            error = f"cannot reach PostgreSQL at {server_of(self.url)}: {one_line(exc)}"
        if error != self._error:
            (log.info if error is None else log.warning)("database health: %s", error or "reachable")
        self._error, self._checked_at = error, time.monotonic()
        return error

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


def scoring_fallback(recommender: Any, body: dict[str, Any], requested: str | None) -> str | None:
    """Why the served model scores in float32 although int8 was asked for, else None.

    Reads a reason the serving state may carry (`scoring_fallback`), else infers it from the mode
    the health body reports."""
    served = getattr(recommender, "_served", None)
    for holder in (body, served, getattr(served, "state", None)):
        reason = holder.get("scoring_fallback") if isinstance(holder, dict) else getattr(holder, "scoring_fallback", None)
        if reason:
            return str(reason)
    if requested == "int8" and body.get("scoring") == "float32":
        return "int8 scoring is not available for this model on this CPU; scoring every movie in float32"
    return None


def health(recommender: Any, probe: DatabaseProbe | None, requested_scoring: str | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 without a served version or database, 200 otherwise ("degraded"
    when scoring fell back to float32, answers exact but slower, or when the servable version was
    refused and an older one still serves; `detail` says why)."""
    body = dict(recommender.health())
    problems = []
    database = probe.status() if probe is not None else None
    body["database"] = None if probe is None else ("ok" if database is None else "unreachable")
    if database is not None:
        problems.append(database)
        body["status"] = "database_unreachable"
    fallback = scoring_fallback(recommender, body, requested_scoring)
    body["scoring_fallback"] = fallback
    if body.get("status") in ("ok", "degraded") and fallback:
        body["status"] = "degraded"
        problems.append(fallback)
    if body.get("status") == "no_embeddings":
        problems.insert(0, "no movie embeddings yet: materialize movie_embeddings first")
    if body.get("refused"):  # a version the server will not serve (e.g. its scaling stats are missing)
        problems.insert(0, str(body["refused"]))
    body["detail"] = "; ".join(problems) or None
    return (200 if body["status"] in ("ok", "degraded") else 503), body
