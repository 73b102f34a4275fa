"""User sources that look up a whole batch of users at once (`lookup_many`, used by candidates.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from movierec_assets.features.compute import user_feature_columns
from movierec_assets.serving.online.state import PostgresUserSource, UserData, UserSource, unpack_rated

T = TypeVar("T")
_NO_IDS = np.zeros(0, np.int64)
_NO_STARS = np.zeros(0, np.float32)


@dataclass(frozen=True)
class UsersBatch:
    """A batch's user data: one frame of feature rows, each request's row in it, and each request's
    rated movie ids and stars, newest first (the seen-mask and the history)."""

    features: pl.DataFrame | np.ndarray | None  # an array: columns in the scaler's canonical order
    row: list[int | None]  # per requested user: its row in `features`, None without features
    seen: list[np.ndarray]  # per requested user: every rated movie id, newest first
    stars: list[np.ndarray]  # per requested user: float32 stars aligned with `seen`

    @classmethod
    def from_users(cls, data: list[UserData]) -> UsersBatch:
        """From per-user lookups (sources without `lookup_many`)."""
        frames = [d.features for d in data if d.features is not None]
        rows, k = [], 0
        for d in data:
            rows.append(None if d.features is None else k)
            k += d.features is not None
        return cls(stack_features(frames) if frames else None, rows, [d.seen for d in data],
                   [d.stars_or_zeros() for d in data])


def stack_features(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """One frame of many users' feature rows (one-row frames may disagree on all-null dtypes)."""
    try:
        return pl.concat(frames, how="vertical")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return pl.concat(frames, how="vertical_relaxed")


# One statement, one round trip and one snapshot per batch: each distinct user's feature row
# (binary tuples straight into one float64 array) and its movielens.user_rated row (packed
# big-endian bytes read with np.frombuffer). Python lists of ids and a polars frame cost ~2 ms of
# GIL time per 32-user batch, which serialised the server.
def _batch_query(columns: list[str]) -> sql.Composed:
    names = sql.SQL(", ").join(sql.SQL("f.") + sql.Identifier(c) for c in columns)
    return sql.SQL(
        "SELECT q.user_id, f.user_id IS NOT NULL, r.movie_ids, r.ratings, {} "
        "FROM unnest(%s::int[]) AS q(user_id) "
        "LEFT JOIN features.user_features f ON f.user_id = q.user_id "
        "LEFT JOIN movielens.user_rated r ON r.user_id = q.user_id"
    ).format(names)


class PostgresBatchUserSource(PostgresUserSource):
    """`PostgresUserSource` plus `lookup_many`: one indexed lookup per distinct user of the batch,
    in one statement: its features (an array in canonical column order, NULL as NaN) and its
    `movielens.user_rated` row. A user's ratings arriving meanwhile (a day load) are seen whole or
    not at all: the row is rewritten in the loader's transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.columns = user_feature_columns()
        self._query = _batch_query(self.columns)

    def lookup_many(self, user_ids: list[int]) -> UsersBatch:
        distinct = sorted(set(user_ids))
        rows = self._retrying(self._rows, distinct)
        warm = [row for row in rows if row[1]]
        features = np.array([row[4:] for row in warm], dtype=np.float64) if warm else None  # NULL -> NaN
        at = {row[0]: i for i, row in enumerate(warm)}
        rated = {row[0]: unpack_rated(row[2], row[3]) for row in rows if row[2] is not None}
        empty = (_NO_IDS, _NO_STARS)
        per_user = [rated.get(u, empty) for u in user_ids]
        return UsersBatch(features, [at.get(u) for u in user_ids], [p[0] for p in per_user],
                          [p[1] for p in per_user])

    def _retrying(self, query: Callable[..., T], *args: Any) -> T:
        try:
            return query(*args)
        except psycopg.OperationalError:
            self._drop()  # a broken connection (server restart): reconnect once
            return query(*args)

    def _rows(self, distinct: list[int]) -> list[tuple[Any, ...]]:
        return self._conn().execute(self._query, (distinct,), binary=True).fetchall()


def lookup_many(users: UserSource, user_ids: list[int]) -> UsersBatch:
    """The batch's user data, in one round trip when the source supports it."""
    many = getattr(users, "lookup_many", None)
    if many is not None:
        return many(user_ids)
    return UsersBatch.from_users([users.lookup(u) for u in user_ids])
