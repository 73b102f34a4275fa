"""`movielens.user_rated` always equals its definition over `movielens.ratings` (every user's rated
movies and stars, newest first): after a history swap, a day load, a reload of the same day with
other content (no double counting), a day emptied, and concurrent loads of days that share users."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from movierec_assets.db import bulk
from movierec_assets.ingest import rated
from movierec_assets.ingest.days import load_days
from movierec_assets.ingest.load import replace_history
from movierec_assets_tests.ingest.days_support import (
    TINY_MOVIES,
    clear_days,
    ensure_tiny_movies,
    ts,
    write_day,
)
from movierec_assets_tests.ingest.test_load import NO_REJECTS, ratings

D1, D2, D3 = date(1991, 2, 1), date(1991, 2, 2), date(1991, 2, 3)
USERS = range(870001, 870009)  # ids no other test uses
SHARED = range(870101, 870109)  # the concurrent test's users: no history rows


def expected(url: str) -> dict[int, tuple[list[int], list[float]]]:
    """The definition, computed client-side from movielens.ratings."""
    frame = bulk.read_polars(url, "SELECT user_id, movie_id, rating, rated_at FROM movielens.ratings")
    frame = frame.sort(["user_id", "rated_at", "movie_id"], descending=[False, True, True])
    out: dict[int, tuple[list[int], list[float]]] = {}
    for (user,), group in frame.group_by(["user_id"], maintain_order=True):
        out[int(user)] = (group["movie_id"].to_list(), group["rating"].to_list())
    return out


def stored(url: str) -> dict[int, tuple[list[int], list[float]]]:
    frame = bulk.read_polars(url, "SELECT user_id, n, movie_ids, ratings FROM movielens.user_rated")
    out = {}
    for user, n, ids, stars in frame.iter_rows():
        got = (np.frombuffer(ids, ">i4").tolist(), np.frombuffer(stars, ">f4").tolist())
        assert len(got[0]) == n == len(got[1])
        out[int(user)] = got
    return out


def assert_consistent(url: str) -> dict[int, tuple[list[int], list[float]]]:
    want = expected(url)
    assert stored(url) == want
    return want


def clear(url: str) -> None:
    """The tiny days' rows gone (written directly: the table is rebuilt after)."""
    clear_days(url)
    rated.rebuild_all(url)


def _line(user: int, movie: int, stars: float, day: date, second: int) -> str:
    return f"{user},{movie},{stars},{ts(day, second)}"


def test_history_swap_and_day_loads_keep_the_table_exact(pg_url: str, tmp_path: Path) -> None:
    ensure_tiny_movies(pg_url)
    clear(pg_url)
    a, b, c = TINY_MOVIES
    u1, u2, u3, u4 = USERS[:4]
    # History: u1 rates a then b (b newest), u2 rates c; two of u1's ratings share a second.
    history = ratings([(u1, a, 4.0, ts(date(1990, 5, 1))), (u1, b, 2.5, ts(date(1990, 5, 2))),
                       (u1, c, 3.0, ts(date(1990, 5, 2))), (u2, c, 5.0, ts(date(1990, 5, 3)))])
    replace_history(pg_url, history, NO_REJECTS, "test-user-rated/ratings.csv")
    got = assert_consistent(pg_url)
    assert got[u1] == ([c, b, a], [3.0, 2.5, 4.0])  # newest first; a tie in time: higher movie id first

    write_day(tmp_path, D1, [_line(u1, a, 1.0, D1, 10), _line(u3, b, 4.5, D1, 20), _line(u4, a, 2.0, D1, 30)])
    load_days(pg_url, [D1], tmp_path)
    got = assert_consistent(pg_url)
    assert got[u1] == ([a, c, b, a], [1.0, 3.0, 2.5, 4.0]) and got[u3] == ([b], [4.5])

    # The same day again with other content: replaced, never added twice; u4 no longer rates on it.
    write_day(tmp_path, D1, [_line(u1, b, 5.0, D1, 11), _line(u3, b, 4.5, D1, 20)])
    load_days(pg_url, [D1], tmp_path)
    got = assert_consistent(pg_url)
    assert got[u1] == ([b, c, b, a], [5.0, 3.0, 2.5, 4.0]) and u4 not in got

    # A history reload keeps the partition rows and their users.
    replace_history(pg_url, history.filter(pl.col("user_id") == u2), NO_REJECTS, "test-user-rated/ratings.csv")
    got = assert_consistent(pg_url)
    assert got[u1] == ([b], [5.0]) and got[u3] == ([b], [4.5])
    clear(pg_url)


def test_concurrent_day_loads_sharing_users_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    """Different days load in parallel; their recomputes of a shared user's row serialise, so the
    last one to commit still holds the other's ratings."""
    ensure_tiny_movies(pg_url)
    clear(pg_url)
    days = [D1, D2, D3]
    for k, day in enumerate(days):
        write_day(tmp_path, day, [_line(u, TINY_MOVIES[(u + k) % 3], (k + 1) * 1.0, day, 100 + u % 50)
                                  for u in SHARED])
    for _ in range(3):
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda d: load_days(pg_url, [d], tmp_path), days))
        got = assert_consistent(pg_url)
        for u in SHARED:
            assert len(got[u][0]) == 3 and got[u][1] == [3.0, 2.0, 1.0]  # one per day, newest day first
    clear(pg_url)
    got = assert_consistent(pg_url)
    assert not set(SHARED) & set(got)


def test_packed_rows_exact_bytes_on_a_handmade_frame() -> None:
    """The history swap's Polars builder packs what `_AGGREGATE` does: newest first, ties by the
    higher movie id, big-endian int4 ids and float4 stars; no ratings give no rows."""
    from datetime import UTC, datetime

    t1, t0 = datetime(2000, 1, 1, tzinfo=UTC), datetime(1999, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame({"user_id": [2, 1, 1, 1], "movie_id": [5, 7, 3, 9], "rating": [1.0, 4.5, 2.0, 3.0],
                          "rated_at": [t1, t1, t1, t0]}).cast({"user_id": pl.Int32, "movie_id": pl.Int32,
                                                               "rating": pl.Float32})
    got = rated.packed_rows(frame).to_pydict()
    assert got["user_id"] == [1, 2] and got["n"] == [3, 1]
    assert np.frombuffer(got["movie_ids"][0], ">i4").tolist() == [7, 3, 9]
    assert np.frombuffer(got["ratings"][0], ">f4").tolist() == [4.5, 2.0, 3.0]
    assert np.frombuffer(got["movie_ids"][1], ">i4").tolist() == [5]
    assert rated.packed_rows(frame.clear()).num_rows == 0
