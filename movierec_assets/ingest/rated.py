"""`movielens.user_rated` (sql/007): every user's rated movies and stars in one row, newest first.

It is derived from `movielens.ratings` and rewritten inside the transaction that changes the
ratings: `replace_all` after the history swap (built in Polars from the Arrow rows the swap already
holds, then one COPY; the set-based SQL `rebuild` took most of the swap's time at 20M ratings),
`refresh_users` for the users a day load touched (set-based SQL, recomputed from movielens.ratings,
so reloading a day never double-counts).
Serving reads one row per user (serving/online/users.py): the seen-mask and the history in one lookup,
from one committed snapshot.

Concurrent day loads serialise on the table (SHARE ROW EXCLUSIVE conflicts with itself, not with
readers) from the refresh to their commit: a refresh's statements start after the previous
loader committed, so each sees every committed rating of its users. Lock order everywhere:
movielens.ratings first, then movielens.user_rated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from movierec_assets.db import bulk

_AGGREGATE = (
    "SELECT r.user_id, count(*), "
    "string_agg(int4send(r.movie_id), ''::bytea ORDER BY r.rated_at DESC, r.movie_id DESC), "
    "string_agg(float4send(r.rating), ''::bytea ORDER BY r.rated_at DESC, r.movie_id DESC) "
    "FROM movielens.ratings r {join} GROUP BY r.user_id"
)
_INSERT = "INSERT INTO movielens.user_rated (user_id, n, movie_ids, ratings) "
_TOUCHED = "_user_rated_touched"
_DAYS = "unnest($1::date[]) AS d(day)"


def rebuild(conn: Any, work_mem: str = "256MB") -> None:
    """Inside the caller's transaction (which holds movielens.ratings): every user's row anew."""
    bulk.execute(conn, "SELECT set_config('work_mem', $1, true)", [work_mem])  # SET LOCAL, bound
    bulk.execute(conn, "TRUNCATE movielens.user_rated")
    bulk.execute(conn, _INSERT + _AGGREGATE.format(join=""))


def packed_rows(ratings: pl.DataFrame) -> pa.Table:
    """The table's rows from (user_id, movie_id, rating, rated_at) ratings, exactly as `_AGGREGATE`
    builds them: per user, movie ids as big-endian int4 and stars as big-endian float4, newest
    first (ties: higher movie id first). The byte columns are two buffers sliced by offsets, so no
    Python object is made per rating."""
    df = ratings.select("user_id", "movie_id", "rating", "rated_at").sort(
        ["user_id", "rated_at", "movie_id"], descending=[False, True, True])
    users = df["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(users)]).astype(np.int32)
    offsets = pa.py_buffer(np.r_[0, np.cumsum(counts, dtype=np.int64)] * 4)

    def packed(values: np.ndarray) -> pa.Array:
        return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(counts),
                                                [None, offsets, pa.py_buffer(values.tobytes())])

    return pa.table({
        "user_id": pa.array(users[starts].astype(np.int32)),
        "n": pa.array(counts),
        "movie_ids": packed(df["movie_id"].to_numpy().astype(">i4")),
        "ratings": packed(df["rating"].to_numpy().astype(">f4")),
    })


def replace_all(conn: Any, ratings: pl.DataFrame) -> int:
    """Inside the caller's transaction (which holds movielens.ratings and has just written all of
    it): every user's row anew from `ratings`, the table's whole new content. Returns users written."""
    bulk.execute(conn, "TRUNCATE movielens.user_rated")
    return bulk.ingest(conn, "movielens", "user_rated", packed_rows(ratings))


def note_users_of_days(conn: Any, day_list: str) -> None:
    """Before a day load deletes its days: remember the users who have ratings on them (with
    `note_users_of_days` again after the COPY, every user whose row the load changes)."""
    bulk.execute(
        conn,
        f"CREATE TEMP TABLE IF NOT EXISTS {_TOUCHED} (user_id int) ON COMMIT DROP",
    )
    bulk.execute(
        conn,
        f"INSERT INTO {_TOUCHED} SELECT DISTINCT r.user_id FROM movielens.ratings r "  # noqa: S608 - fixed names
        f"JOIN {_DAYS} ON r.partition_day = d.day",
        [day_list],
    )


def refresh_noted_users(conn: Any) -> None:
    """Recompute the rows of the users `note_users_of_days` collected, from movielens.ratings."""
    bulk.execute(conn, "LOCK TABLE movielens.user_rated IN SHARE ROW EXCLUSIVE MODE")
    touched = f"(SELECT DISTINCT user_id FROM {_TOUCHED})"  # noqa: S608 - fixed names
    bulk.execute(conn, f"DELETE FROM movielens.user_rated u USING {touched} t WHERE u.user_id = t.user_id")  # noqa: S608
    bulk.execute(conn, _INSERT + _AGGREGATE.format(join=f"JOIN {touched} t ON t.user_id = r.user_id"))
    bulk.execute(conn, f"DROP TABLE {_TOUCHED}")


def refresh_users(conn: Any, user_ids: list[int]) -> None:
    """Recompute these users' rows (tests and tools that write movielens.ratings directly)."""
    bulk.execute(conn, f"CREATE TEMP TABLE IF NOT EXISTS {_TOUCHED} (user_id int) ON COMMIT DROP")
    bulk.execute(conn, f"INSERT INTO {_TOUCHED} SELECT unnest($1::int[])",  # noqa: S608 - fixed names
                 ["{" + ",".join(str(int(u)) for u in user_ids) + "}"])
    refresh_noted_users(conn)


def rebuild_all(url: str) -> None:
    """Rebuild the whole table in its own transaction (after writing movielens.ratings directly)."""
    with bulk.transaction(url) as conn:
        bulk.execute(conn, "LOCK TABLE movielens.ratings IN SHARE MODE")
        rebuild(conn)
