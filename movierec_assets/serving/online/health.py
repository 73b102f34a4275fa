"""What `GET /health` answers: 200 only while recommendations can be answered.

The database is checked by a background thread (`DatabaseProbe`): `SELECT 1` every `every_s`
seconds on one kept connection, reconnecting with a bounded connect time when it breaks. /health
only reads the last result, so it never waits on the database and costs the same under load. A
result older than a check period plus the time limit counts as unreachable (a hung server).

The same thread reads the age of the data the served model was trained on (`ModelDataAge`): the
served version's `ml.model_versions.data_end`, and the newest rating loaded so far. The age is
newest rating minus data_end, not now minus data_end: under replay the days are years old, and in
production the newest rating is close to now anyway. That the days themselves stop arriving is
what the serving assets' freshness policy shows in the UI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from movierec_assets.db.connect import one_line, server_of
from movierec_assets.db.url import libpq_params

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
CHECK_TIMEOUT_S = 2  # libpq's connect_timeout (whole seconds, at least 2)
DATA_EVERY_S = 5.0  # the data age is re-read this often, and at once when the served version changes

# The served version's data_end (one primary-key lookup); the newest landed rating: the newest day
# from the partial index on partition_day, then that day's rows only (never a scan of the history).
_DATA_END = "SELECT data_end FROM ml.model_versions WHERE version = %s"
_NEWEST_LANDED = (
    "SELECT max(rated_at) FROM movielens.ratings WHERE partition_day = "
    "(SELECT max(partition_day) FROM movielens.ratings WHERE partition_day IS NOT NULL)"
)
# Before any day has landed, the history's newest rating: a full scan, so read once per served version.
_NEWEST_HISTORY = "SELECT max(rated_at) FROM movielens.ratings"


@dataclass(frozen=True)
class ModelDataAge:
    """What the served `version` was trained on, as the registry and movielens.ratings say."""

    version: str
    data_end: datetime | None  # ml.model_versions.data_end; None: the registry does not know
    newest_rating: datetime | None  # the newest rating loaded (landed days, else the history)

    def fields(self) -> dict[str, Any]:
        """The /health fields: ISO timestamps, and the age in hours (None when either end is unknown;
        0 when the model has seen every loaded rating)."""
        age = None
        if self.data_end is not None and self.newest_rating is not None:
            age = round(max(0.0, (self.newest_rating - self.data_end).total_seconds() / 3600), 3)
        return {"model_data_end": _iso(self.data_end), "newest_rating_at": _iso(self.newest_rating),
                "model_data_age_hours": age}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def read_data_age(conn: psycopg.Connection[Any], version: str,
                  history_newest: Callable[[], datetime | None]) -> ModelDataAge:
    """`version`'s data age on `conn`; `history_newest` gives the history's newest rating, asked
    only while no day has landed."""
    row = conn.execute(_DATA_END, (version,)).fetchone()
    newest = conn.execute(_NEWEST_LANDED).fetchone()[0]  # type: ignore[index]
    return ModelDataAge(version, row[0] if row else None, newest if newest is not None else history_newest())


class DatabaseProbe:
    """The database's reachability as of the last check, refreshed in the background."""

    def __init__(self, url: str, every_s: float = CHECK_EVERY_S, timeout_s: int = CHECK_TIMEOUT_S,
                 served_version: Callable[[], str | None] | None = None, data_every_s: float = DATA_EVERY_S) -> None:
        self.url, self.every_s, self.timeout_s = url, every_s, max(2, int(timeout_s))
        self.served_version, self.data_every_s = served_version, data_every_s
        self._data: ModelDataAge | None = None
        self._data_at = float("-inf")
        self._history: tuple[str, datetime | None] | None = None  # (version, newest history rating)
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

    def data_age(self, version: str | None) -> dict[str, Any]:
        """The /health data-age fields for `version`: None each unless the last reading is of it."""
        data = self._data
        if data is None or version is None or data.version != version:
            return ModelDataAge("", None, None).fields()
        return data.fields()

    def check(self, data: bool = True) -> str | None:
        """One `SELECT 1` (connecting first if needed), then, with `data`, the served version's data
        age; records and returns the error, if any."""
        try:
            if self._conn is None or self._conn.closed:
                params = {**libpq_params(self.url), "connect_timeout": str(self.timeout_s),
                          "application_name": "movierec-health"}
                self._conn = psycopg.connect(self.url, autocommit=True, **params)
            self._conn.execute("SELECT 1").fetchone()
            if data:
                self._read_data(self._conn)
            error = None
        except psycopg.Error as exc:
            self._drop()
            error = f"cannot reach PostgreSQL at {server_of(self.url)}: {one_line(exc)}"
        if error != self._error:
            (log.info if error is None else log.warning)("database health: %s", error or "reachable")
        self._error, self._checked_at = error, time.monotonic()
        return error

    def _read_data(self, conn: psycopg.Connection[Any]) -> None:
        version = self.served_version() if self.served_version else None
        if version is None:
            self._data = None
            return

        def history_newest() -> datetime | None:  # a full scan: once per served version
            if self._history is None or self._history[0] != version:
                self._history = (version, conn.execute(_NEWEST_HISTORY).fetchone()[0])  # type: ignore[index]
            return self._history[1]

        try:
            self._data, self._data_at = read_data_age(conn, version, history_newest), time.monotonic()
        except psycopg.Error as exc:
            if conn.broken:  # the connection itself: the database is unreachable
                raise
            self._data = None  # a failed query says nothing about reachability; the age is unknown
            log.warning("health: cannot read the data age of model version %s: %s", version, one_line(exc))

    def _data_due(self) -> bool:
        version = self.served_version() if self.served_version else None
        known = self._data.version if self._data else None
        return version != known or time.monotonic() - self._data_at >= self.data_every_s

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.check(data=self._data_due())

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
    if probe is not None:  # of the version served now, from the registry (None while unknown)
        body.update(probe.data_age(body.get("model_version")))
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
