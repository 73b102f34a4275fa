"""User lookups for a whole batch of requests in one round trip (two `= ANY` queries)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl
import psycopg

from movierec_assets.serving.state import PostgresUserSource, UserData


class PostgresBatchUserSource(PostgresUserSource):
    """`PostgresUserSource` plus `lookup_many`: a batch of 100 users costs two queries, not 200."""

    def lookup_many(self, user_ids: list[int]) -> list[UserData]:
        try:
            return self._lookup_many(user_ids)
        except psycopg.OperationalError:
            self._drop()  # a broken connection (server restart): reconnect once
            return self._lookup_many(user_ids)

    def _lookup_many(self, user_ids: list[int]) -> list[UserData]:
        conn = self._conn()
        distinct = sorted(set(user_ids))
        with conn.pipeline():  # both queries in one round trip
            cur = conn.execute("SELECT * FROM features.user_features WHERE user_id = ANY(%s)", (distinct,))
            rated = conn.execute("SELECT user_id, movie_id FROM movielens.ratings WHERE user_id = ANY(%s)",
                                 (distinct,))
        names = [d.name for d in cur.description]
        key = names.index("user_id")
        rows = cur.fetchall()
        frame = pl.DataFrame(rows, schema=names, orient="row") if rows else None
        at = {row[key]: i for i, row in enumerate(rows)}
        seen: dict[int, list[int]] = defaultdict(list)
        for user_id, movie_id in rated.fetchall():
            seen[user_id].append(movie_id)
        out = []
        for u in user_ids:
            i = at.get(u)
            features = None if i is None or frame is None else frame.slice(i, 1)  # zero-copy views
            out.append(UserData(features, np.array(seen.get(u, ()), dtype=np.int64)))
        return out
