"""User sources that look up a whole batch of users at once (`lookup_many`, used by scoring.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from movierec_assets.features.compute import user_feature_columns
from movierec_assets.serving.memory import MemoryUserSource
from movierec_assets.serving.state import PostgresUserSource, UserData, UserSource

T = TypeVar("T")


@dataclass(frozen=True)
class UsersBatch:
    """A batch's user data: one frame of feature rows, each request's row in it, seen movie ids
    (possibly still being fetched: reading `seen` waits for them)."""

    features: pl.DataFrame | np.ndarray | None  # an array: columns in the scaler's canonical order
    row: list[int | None]  # per requested user: its row in `features`, None without features
    pending_seen: list[np.ndarray] | Future[list[np.ndarray]]

    @property
    def seen(self) -> list[np.ndarray]:
        pending = self.pending_seen
        return pending.result() if isinstance(pending, Future) else pending

    @classmethod
    def from_users(cls, data: list[UserData]) -> UsersBatch:
        """From per-user lookups (sources without `lookup_many`)."""
        frames = [d.features for d in data if d.features is not None]
        rows, k = [], 0
        for d in data:
            rows.append(None if d.features is None else k)
            k += d.features is not None
        return cls(stack_features(frames) if frames else None, rows, [d.seen for d in data])


def stack_features(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """One frame of many users' feature rows (one-row frames may disagree on all-null dtypes)."""
    try:
        return pl.concat(frames, how="vertical")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return pl.concat(frames, how="vertical_relaxed")


# Rated movies come back as packed big-endian int4 bytes read with np.frombuffer, and feature
# rows as binary tuples straight into one float64 array: Python lists of ids and a polars frame
# cost ~2 ms of GIL time per 32-user batch, which serialised the server.
_SEEN = ("SELECT user_id, string_agg(int4send(movie_id), ''::bytea) FROM movielens.ratings "
         "WHERE user_id = ANY(%s) GROUP BY user_id")


def _features_query(columns: list[str]) -> sql.Composed:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("SELECT user_id, {} FROM features.user_features WHERE user_id = ANY(%s)").format(names)


class PostgresBatchUserSource(PostgresUserSource):
    """`PostgresUserSource` plus `lookup_many`: one query for the batch's feature rows (an array in
    canonical column order, NULL as NaN) and one, on its own connection and thread, for their
    rated movies. The second is the slow one (every rating row of every user); the caller runs the
    user tower and the first scoring pass meanwhile and reads `seen` only to mask."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.columns = user_feature_columns()
        self._features = _features_query(self.columns)
        self._seen_thread = ThreadPoolExecutor(1, thread_name_prefix="seen")

    def lookup_many(self, user_ids: list[int]) -> UsersBatch:
        distinct = sorted(set(user_ids))
        seen = self._seen_thread.submit(self._retrying, self._seen, distinct, user_ids)
        rows = self._retrying(self._feature_rows, distinct)
        features = np.array([row[1:] for row in rows], dtype=np.float64) if rows else None  # NULL -> NaN
        at = {row[0]: i for i, row in enumerate(rows)}
        return UsersBatch(features, [at.get(u) for u in user_ids], seen)

    def _retrying(self, query: Callable[..., T], *args: Any) -> T:
        try:
            return query(*args)
        except psycopg.OperationalError:
            self._drop()  # a broken connection (server restart): reconnect once
            return query(*args)

    def _feature_rows(self, distinct: list[int]) -> list[tuple[Any, ...]]:
        return self._conn().execute(self._features, (distinct,), binary=True).fetchall()

    def _seen(self, distinct: list[int], user_ids: list[int]) -> list[np.ndarray]:
        rated = self._conn().execute(_SEEN, (distinct,), binary=True).fetchall()  # one row per user
        seen = {user_id: np.frombuffer(blob, dtype=">i4").astype(np.int64) for user_id, blob in rated}
        empty = np.zeros(0, np.int64)
        return [seen.get(u, empty) for u in user_ids]


class MemoryBatchUserSource(MemoryUserSource):
    """`MemoryUserSource` plus `lookup_many`: the batch's feature rows stacked into one array
    (a polars frame would cost ~0.25 ms per batch to build, one Series per column)."""

    def lookup_many(self, user_ids: list[int]) -> UsersBatch:
        known = [u for u in dict.fromkeys(user_ids) if u in self.features]
        rows = np.stack([self.features[u] for u in known]) if known else None
        at = {u: i for i, u in enumerate(known)}
        empty = np.zeros(0, np.int64)
        return UsersBatch(rows, [at.get(u) for u in user_ids], [self.seen.get(u, empty) for u in user_ids])


def lookup_many(users: UserSource, user_ids: list[int]) -> UsersBatch:
    """The batch's user data, in one round trip when the source supports it."""
    many = getattr(users, "lookup_many", None)
    if many is not None:
        return many(user_ids)
    return UsersBatch.from_users([users.lookup(u) for u in user_ids])
