"""`movielens.user_rated` (sql/007): every user's rated movies and stars in one row, newest first.

It is derived from `movielens.ratings` and rewritten inside the transaction that changes the
ratings, by set-based SQL only: `rebuild` after the history swap, `refresh_users` for the users a
day load touched (recomputed from movielens.ratings, so reloading a day never double-counts).
Serving reads one row per user (serving/online/users.py): the seen-mask and the history in one lookup,
from one committed snapshot.

Concurrent day loads serialise on the table (SHARE ROW EXCLUSIVE conflicts with itself, not with
readers) from the refresh to their commit: a refresh's statements start after the previous
loader committed, so each sees every committed rating of its users. Lock order everywhere:
movielens.ratings first, then movielens.user_rated.
"""

from __future__ import annotations

from typing import Any

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
