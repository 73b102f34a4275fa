"""Atomic history/movies replaces on the real server: quarantine, idempotence, partition rows kept,
failures leaving the previous content, keys and indexes rebuilt."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from movierec_assets.db.connect import connect
from movierec_assets.ingest.load import load_movies, replace_history
from movierec_assets.ingest.validate import parse_ratings_file, validate_ratings
from movierec_assets_tests.ingest.test_validate import bad_file_bytes, expected_rejects

SOURCE = "test-load/ratings.csv"


def ratings(rows: list[tuple[int, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "movie_id": [r[1] for r in rows],
            "rating": [r[2] for r in rows],
            "rated_at": [datetime.fromtimestamp(r[3], UTC) for r in rows],
        },
        schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32, "rated_at": pl.Datetime("us", "UTC")},
    )


NO_REJECTS = pl.DataFrame(schema={"line_number": pl.Int64, "raw_line": pl.String, "reason": pl.String})


def table_state(url: str) -> dict[str, object]:
    with connect(url) as conn:
        history = conn.execute(
            "SELECT user_id, movie_id, rating, extract(epoch FROM rated_at)::bigint FROM movielens.ratings "
            "WHERE partition_day IS NULL ORDER BY 1, 2, 4"
        ).fetchall()
        partitions = conn.execute(
            "SELECT user_id, movie_id, partition_day FROM movielens.ratings WHERE partition_day IS NOT NULL ORDER BY 1, 2"
        ).fetchall()
        rejects = conn.execute(
            "SELECT source_file, line_number, reason FROM movielens.rejected_ratings "
            "WHERE partition_day IS NULL ORDER BY line_number"
        ).fetchall()
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'ratings'")}
    return {"history": history, "partitions": partitions, "rejects": rejects, "indexes": indexes}


def reset(url: str) -> None:
    with connect(url) as conn:
        conn.execute("TRUNCATE movielens.ratings, movielens.rejected_ratings")


def test_good_rows_load_bad_rows_quarantined_and_reload_is_idempotent(pg_url: str, tmp_path: Path) -> None:
    reset(pg_url)
    path = tmp_path / "ratings.csv"
    path.write_bytes(bad_file_bytes())
    parsed = parse_ratings_file(path)
    good, rejected = validate_ratings(parsed.good, pl.Series([1, 2]))
    all_rejects = pl.concat([parsed.rejected, rejected]).sort("line_number")
    stats = replace_history(pg_url, good, all_rejects, SOURCE)
    state = table_state(pg_url)
    assert state["history"] == [(1, 1, 4.0, 964982703), (8, 1, 4.0, 5), (10, 2, 0.5, 1000)]
    assert state["rejects"] == [(SOURCE, line, reason) for line, reason in expected_rejects()]
    assert (stats.rows, stats.rejected, stats.partition_rows_kept) == (3, len(expected_rejects()), 0)
    assert stats.copy_seconds > 0 and stats.seconds >= stats.copy_seconds
    replace_history(pg_url, good, all_rejects, SOURCE)
    assert table_state(pg_url) == state  # replaced, not appended: same rows, same quarantine


def test_partition_rows_survive_a_history_reload(pg_url: str) -> None:
    reset(pg_url)
    replace_history(pg_url, ratings([(1, 1, 4.0, 100), (1, 2, 3.0, 100)]), NO_REJECTS, SOURCE)
    with connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO movielens.ratings VALUES (7, 1, 2.5, '2030-01-02T10:00:00Z', '2030-01-02'), "
            "(7, 2, 2.5, '2030-01-03T10:00:00Z', '2030-01-03'), (8, 1, 1.0, '2029-12-31T10:00:00Z', '2029-12-31')"
        )
        conn.execute(
            "INSERT INTO movielens.rejected_ratings (source_file, line_number, raw_line, reason, partition_day) "
            "VALUES ('2030-01-02.csv', 5, 'x', 'bad', '2030-01-02')"
        )
    stats = replace_history(pg_url, ratings([(2, 1, 5.0, 200)]), NO_REJECTS, SOURCE)
    state = table_state(pg_url)
    assert state["history"] == [(2, 1, 5.0, 200)]
    assert state["partitions"] == [(7, 1, date(2030, 1, 2)), (7, 2, date(2030, 1, 3)), (8, 1, date(2029, 12, 31))]
    assert stats.partition_rows_kept == 3
    # With a new cutoff, partition rows on or before it are history now, and are dropped.
    stats = replace_history(pg_url, ratings([(2, 1, 5.0, 200)]), NO_REJECTS, SOURCE, keep_partitions_after=date(2030, 1, 1))
    assert table_state(pg_url)["partitions"] == [(7, 1, date(2030, 1, 2)), (7, 2, date(2030, 1, 3))]
    with connect(pg_url) as conn:
        day_rejects = conn.execute("SELECT count(*) FROM movielens.rejected_ratings WHERE partition_day IS NOT NULL")
        assert day_rejects.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([(1, 1, 4.0, 100), (1, 1, 3.0, 100)], "ratings_pkey"),  # a duplicate key fails the key build
        ([(1, 1, 4.3, 100)], "ratings_rating_half_steps"),  # a bad rating fails the CHECK during COPY
    ],
)
def test_a_failed_load_leaves_the_previous_content(pg_url: str, rows: list, error: str) -> None:
    reset(pg_url)
    replace_history(pg_url, ratings([(1, 1, 4.0, 100), (2, 2, 3.0, 100)]), NO_REJECTS, SOURCE)
    with connect(pg_url) as conn:
        conn.execute("INSERT INTO movielens.ratings VALUES (7, 1, 2.5, '2030-01-02T10:00:00Z', '2030-01-02')")
    before = table_state(pg_url)
    bad_rejects = pl.DataFrame({"line_number": [9], "raw_line": ["z"], "reason": ["r"]})
    with pytest.raises(Exception, match=error):
        replace_history(pg_url, ratings(rows), bad_rejects, SOURCE)
    assert table_state(pg_url) == before


def test_keys_and_other_indexes_are_rebuilt(pg_url: str) -> None:
    reset(pg_url)
    with connect(pg_url) as conn:
        conn.execute("CREATE INDEX IF NOT EXISTS test_ingest_movie_idx ON movielens.ratings (movie_id)")
    try:
        replace_history(pg_url, ratings([(1, 1, 4.0, 100)]), NO_REJECTS, SOURCE)
        indexes = table_state(pg_url)["indexes"]
        assert {"ratings_pkey", "ratings_partition_day_idx", "test_ingest_movie_idx"} <= indexes
        with connect(pg_url) as conn:
            kind = conn.execute(
                "SELECT contype FROM pg_constraint WHERE conname = 'ratings_pkey' AND conrelid = 'movielens.ratings'::regclass"
            ).fetchone()
        assert kind == ("p",)
    finally:
        with connect(pg_url) as conn:
            conn.execute("DROP INDEX IF EXISTS movielens.test_ingest_movie_idx")


def test_a_concurrent_partition_insert_is_waited_for_not_lost(pg_url: str) -> None:
    reset(pg_url)
    with connect(pg_url) as conn:  # a partition load in flight: its transaction is open
        conn.execute("INSERT INTO movielens.ratings VALUES (7, 1, 2.5, '2030-01-02T10:00:00Z', '2030-01-02')")
        done = threading.Event()
        loader = threading.Thread(
            target=lambda: (replace_history(pg_url, ratings([(1, 1, 4.0, 100)]), NO_REJECTS, SOURCE), done.set())
        )
        loader.start()
        time.sleep(1.0)
        assert not done.is_set()  # the history reload waits for the table lock
    loader.join(timeout=60)
    assert done.is_set()
    state = table_state(pg_url)
    assert state["history"] == [(1, 1, 4.0, 100)]
    assert state["partitions"] == [(7, 1, date(2030, 1, 2))]


def movies(ids: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"movie_id": ids, "title": [f"M{i} (2000)" for i in ids], "year": [2000] * len(ids), "genres": [["Drama"]] * len(ids)},
        schema={"movie_id": pl.Int32, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)},
    )


def test_movies_tags_links_replace_atomically(pg_url: str) -> None:
    tags = pl.DataFrame(
        {"user_id": [1], "movie_id": [1], "tag": ["fun"], "tagged_at": [datetime(2020, 1, 1, tzinfo=UTC)]},
        schema={"user_id": pl.Int32, "movie_id": pl.Int32, "tag": pl.String, "tagged_at": pl.Datetime("us", "UTC")},
    )
    links = pl.DataFrame({"movie_id": [1], "imdb_id": ["0114709"], "tmdb_id": [862]},
                         schema={"movie_id": pl.Int32, "imdb_id": pl.String, "tmdb_id": pl.Int32})  # fmt: skip
    stats = load_movies(pg_url, movies([1, 2, 3]), tags, links)
    assert (stats.movies, stats.tags, stats.links) == (3, 1, 1)
    stats = load_movies(pg_url, movies([4, 5]), None, None)  # absent files empty their tables
    assert (stats.movies, stats.tags, stats.links) == (2, 0, 0)

    def content() -> tuple[list, int, int]:
        with connect(pg_url) as conn:
            ids = [r[0] for r in conn.execute("SELECT movie_id FROM movielens.movies ORDER BY 1")]
            n_tags = conn.execute("SELECT count(*) FROM movielens.tags").fetchone()[0]
            n_links = conn.execute("SELECT count(*) FROM movielens.links").fetchone()[0]
        return ids, n_tags, n_links

    assert content() == ([4, 5], 0, 0)
    with pytest.raises(Exception, match="movies_pkey"):
        load_movies(pg_url, movies([6, 6]), tags, links)
    assert content() == ([4, 5], 0, 0)

