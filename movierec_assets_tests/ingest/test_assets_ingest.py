"""raw_movies and raw_ratings materialized through real Dagster against the real server."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from movierec_assets.assets.ingest import IngestConfig, raw_movies, raw_ratings
from movierec_assets.db.connect import connect
from movierec_assets.resources import PostgresResource

RESOURCES = {"postgres": PostgresResource()}
DAY = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp())
MOVIES_CSV = 'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Comedy\n2,"Heat, The (1995)",Action\n'
# Every rating on one UTC day, so the whole file is history. Line numbers in the comments.
RATINGS_LINES = [
    f"1,1,4.0,{DAY}",  # 2
    f"1,2,3.5,{DAY + 60}",  # 3
    f"2,1,9,{DAY}",  # 4 out of range
    f"2,2,2.7,{DAY}",  # 5 not a half step
    "garbage line",  # 6
    f"3,77,4.0,{DAY}",  # 7 unknown movie
    f"1,1,1.0,{DAY}",  # 8 duplicate of line 2
    f"3,2,5.0,{DAY + 120}",  # 9
]
EXPECTED_REJECTS = [
    (4, "rating 9 is outside 0.5..5.0"),
    (5, "rating 2.7 is not a half step in 0.5..5.0"),
    (6, "expected 4 fields, got 1"),
    (7, "unknown movieId 77"),
    (8, "duplicate of line 2"),
]


def dataset(tmp_path: Path, ratings: bytes) -> Path:
    root = tmp_path / "ml-test"
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.csv").write_text(MOVIES_CSV)
    (root / "ratings.csv").write_bytes(ratings)
    return root


def good_dataset(tmp_path: Path) -> Path:
    return dataset(tmp_path, ("userId,movieId,rating,timestamp\n" + "\n".join(RATINGS_LINES) + "\n").encode())


def run(data_dir: Path, max_share: float = 0.01, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    config = IngestConfig(data_dir=str(data_dir), max_reject_share=max_share)
    return dg.materialize(
        [raw_movies, raw_ratings],
        resources=RESOURCES,
        run_config=dg.RunConfig({"raw_movies": config, "raw_ratings": config}),
        raise_on_error=raise_on_error,
    )


def db_state(url: str) -> dict[str, object]:
    with connect(url) as conn:
        return {
            "history": conn.execute(
                "SELECT user_id, movie_id, rating FROM movielens.ratings WHERE partition_day IS NULL ORDER BY 1, 2"
            ).fetchall(),
            "partitions": conn.execute(
                "SELECT count(*) FROM movielens.ratings WHERE partition_day IS NOT NULL"
            ).fetchone()[0],
            "rejects": conn.execute(
                "SELECT line_number, reason, source_file FROM movielens.rejected_ratings "
                "WHERE partition_day IS NULL ORDER BY line_number"
            ).fetchall(),
            "movies": conn.execute("SELECT count(*) FROM movielens.movies").fetchone()[0],
        }


def materialized_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return dict(events[-1].materialization.metadata)


def expected_history_count(ratings_csv: Path, fraction: float = 0.625) -> int:
    """The split rule, computed independently of the project's code."""
    df = pl.read_csv(ratings_csv).sort("timestamp", "userId", "movieId")
    h = math.floor(fraction * df.height)
    cutoff = datetime.fromtimestamp(df["timestamp"][h - 1], UTC).date()
    days = df["timestamp"].map_elements(lambda t: datetime.fromtimestamp(t, UTC).date(), return_dtype=pl.Date)
    return int((days <= cutoff).sum())


def test_ml_small_history_loads_with_metadata_and_reloads_identically(
    pg_url: str, ml_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEREC_DATA_DIR", str(ml_small))
    with connect(pg_url) as conn:  # no partition rows left by other tests
        conn.execute("TRUNCATE movielens.ratings, movielens.rejected_ratings")
    result = dg.materialize([raw_movies, raw_ratings], resources=RESOURCES)
    assert result.success
    expected = expected_history_count(ml_small / "ratings.csv")
    meta = materialized_metadata(result, "raw_ratings")
    state = db_state(pg_url)
    assert len(state["history"]) == expected == meta["dagster/row_count"].value
    assert state["movies"] == 9742 and state["rejects"] == []
    for key in ("dagster/column_schema", "dagster/table_name", "min_rated_at", "max_rated_at", "cutoff_day",
                "load_rows_per_s", "end_to_end_rows_per_s", "rows_rejected"):  # fmt: skip
        assert key in meta, key
    assert meta["dagster/table_name"].value == "movielens.ratings"
    assert meta["rows_rejected"].value == 0
    assert meta["load_rows_per_s"].value > 0
    movies_meta = materialized_metadata(result, "raw_movies")
    assert movies_meta["dagster/row_count"].value == 9742 and movies_meta["tags_rows"].value == 3683
    cutoff = meta["cutoff_day"].value
    with connect(pg_url) as conn:  # a day partition delivered after the cutoff
        conn.execute(
            "INSERT INTO movielens.ratings VALUES (1, 1, 3.0, %s::date + 1 + time '12:00', %s::date + 1)", (cutoff, cutoff)
        )
    again = dg.materialize([raw_movies, raw_ratings], resources=RESOURCES)
    assert again.success
    after = db_state(pg_url)
    assert after["history"] == state["history"] and after["partitions"] == 1
    assert materialized_metadata(again, "raw_ratings")["partition_rows_kept"].value == 1


def test_bad_rows_are_quarantined_with_reasons_and_line_numbers(pg_url: str, tmp_path: Path) -> None:
    root = good_dataset(tmp_path)
    result = run(root, max_share=0.9)
    state = db_state(pg_url)
    assert state["history"] == [(1, 1, 4.0), (1, 2, 3.5), (3, 2, 5.0)]
    source = str(root / "ratings.csv")
    assert state["rejects"] == [(line, reason, source) for line, reason in EXPECTED_REJECTS]
    assert materialized_metadata(result, "raw_ratings")["rows_rejected"].value == len(EXPECTED_REJECTS)
    run(root, max_share=0.9)
    assert db_state(pg_url) == state  # idempotent: nothing doubled in the table or the quarantine


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64, "not a ratings CSV"),
        (b"userId,movieId,rating\n1,1,4.0\n", "bad header 'userId,movieId,rating': missing column(s) timestamp"),
        (("userId,movieId,rating,timestamp\n" + "\n".join(RATINGS_LINES) + "\n").encode(), "5 of 8 rows rejected"),
    ],
    ids=["not-csv", "missing-column", "too-many-bad-rows"],
)
def test_unusable_file_fails_clearly_and_keeps_the_previous_data(
    pg_url: str, tmp_path: Path, content: bytes, message: str
) -> None:
    run(good_dataset(tmp_path / "good"), max_share=0.9)
    before = db_state(pg_url)
    bad = dataset(tmp_path / "bad", content)
    result = run(bad, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "raw_ratings"
    error_text = failure.step_failure_data.error.message
    assert f"{bad / 'ratings.csv'}: {message}" in error_text
    after = db_state(pg_url)
    assert after["history"] == before["history"] and after["rejects"] == before["rejects"]
