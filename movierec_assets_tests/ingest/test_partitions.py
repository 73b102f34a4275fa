"""daily_partitioned_ratings against the real server: ranges, idempotence, bad files, concurrency."""

from __future__ import annotations

import math
import threading
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.ingest.days import DayLoadError, load_days
from movierec_assets.ingest.replay import replay
from movierec_assets.movielens.source import read_movies, scan_ratings
from movierec_assets.movielens.split import compute_split
from movierec_assets.partitions import daily_partitions_for, day_range_for
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.ingest.days_support import (
    clear_days,
    day_counts,
    day_lines,
    ensure_tiny_movies,
    materialize_days,
    rejects,
    tiny_asset,
    ts,
    write_day,
)

D1, D2, D3 = date(1991, 1, 5), date(1991, 1, 6), date(1991, 1, 7)


@pytest.fixture
def landing(monkeypatch: pytest.MonkeyPatch) -> Path:
    path = traversable_tmpdir("movierec-landing-")
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(path))
    return path


@pytest.fixture
def tiny(pg_url: str) -> str:
    ensure_tiny_movies(pg_url)
    clear_days(pg_url)
    return pg_url


def _expected_range(source: Path) -> tuple[date, date]:
    """The split rule computed here independently: sort, H = floor(0.625 N), cutoff = day of the H-th."""
    raw = pl.read_csv(source / "ratings.csv").sort("timestamp", "userId", "movieId")
    days = pl.from_epoch(raw["timestamp"], time_unit="s").dt.date()
    h = math.floor(0.625 * raw.height)
    return days[h - 1] + timedelta(days=1), days.max()


def test_partitions_are_the_future_days_of_ml_small(ml_small: Path) -> None:
    first, last = _expected_range(ml_small)
    manifest = compute_split(scan_ratings(ml_small), dataset_id="ml-small", source_dir=str(ml_small))
    keys = daily_partitions_for(day_range_for(manifest.cutoff_day, manifest.last_day, "ml")).get_partition_keys()
    assert keys[0] == first.isoformat() and keys[-1] == last.isoformat()
    assert len(keys) == (last - first).days + 1 == 2915
    assert len(set(keys)) == len(keys)


def test_a_dataset_without_future_days_has_no_partitions() -> None:
    days = day_range_for(date(2020, 1, 5), date(2020, 1, 5), "history-only")
    assert days.empty and days.days() == [] and "no future days" in days.describe()
    assert daily_partitions_for(days).get_partition_keys() == []


def test_day_loads_and_reloads_idempotently(tiny: str, landing: Path) -> None:
    asset = tiny_asset()
    write_day(landing, D1, day_lines(D1, 50))
    result = materialize_days(asset, D1)
    meta = result.asset_materializations_for_node("daily_partitioned_ratings")[0].metadata
    assert meta["rows_loaded"].value == 50 and meta["rows_rejected"].value == 0
    assert meta["dagster/row_count"].value == 50 and meta["load_seconds"].value > 0
    materialize_days(asset, D1)
    assert day_counts(tiny, [D1]) == {D1: 50}
    write_day(landing, D1, day_lines(D1, 20))  # a replaced file replaces the day's rows
    materialize_days(asset, D1)
    assert day_counts(tiny, [D1]) == {D1: 20}


def test_bad_rows_are_quarantined_with_reasons(tiny: str, landing: Path) -> None:
    good = day_lines(D2, 3)
    bad = [
        "1,990001,abc," + str(ts(D2)),  # line 5: unparseable rating
        "2,990002,7.0," + str(ts(D2)),  # line 6: out of range
        "3,424242,4.0," + str(ts(D2)),  # line 7: unknown movie
        "4,990001,4.0," + str(ts(D3)),  # line 8: the next day
        "5,990001,4.0",  # line 9: missing field
    ]
    write_day(landing, D2, good + bad)
    result = materialize_days(tiny_asset(), D2)
    meta = result.asset_materializations_for_node("daily_partitioned_ratings")[0].metadata
    assert (meta["rows_loaded"].value, meta["rows_rejected"].value) == (3, 5)
    got = rejects(tiny, D2)
    assert [r[0] for r in got] == [5, 6, 7, 8, 9]
    reasons = [r[1] for r in got]
    assert "rating" in reasons[0] and "outside 0.5..5.0" in reasons[1] and "unknown movieId 424242" in reasons[2]
    assert "outside file day 1991-01-06" in reasons[3] and "expected 4 fields" in reasons[4]
    assert {r[2] for r in got} == {"1991-01-06.csv"}
    materialize_days(tiny_asset(), D2)  # a rerun replaces the quarantine rows too
    assert len(rejects(tiny, D2)) == 5 and day_counts(tiny, [D2]) == {D2: 3}


def test_unparseable_file_fails_and_keeps_previous_rows(tiny: str, landing: Path) -> None:
    asset = tiny_asset()
    write_day(landing, D3, day_lines(D3, 7))
    materialize_days(asset, D3)
    (landing / "1991-01-07.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00garbage")
    result = materialize_days(asset, D3, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error.message)
    assert "1991-01-07.csv" in message and "not a ratings CSV" in message
    assert day_counts(tiny, [D3]) == {D3: 7}


def test_missing_day_file_fails_naming_the_expected_path(tiny: str, landing: Path) -> None:
    day = date(1991, 2, 1)
    result = materialize_days(tiny_asset(), day, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert str(landing / "1991-02-01.csv") in failure.event_specific_data.error.message
    assert day_counts(tiny, [day]) == {}


def test_concurrent_partitions_both_succeed(tiny: str, landing: Path) -> None:
    """Two different days and the same day twice, at once: every run succeeds, counts are exact."""
    a, b = date(1991, 3, 1), date(1991, 3, 2)
    write_day(landing, a, day_lines(a, 4000))
    write_day(landing, b, day_lines(b, 3000, user0=100000))
    asset = tiny_asset()
    results: list[bool] = []

    def run(day: date) -> None:
        results.append(materialize_days(asset, day, raise_on_error=False).success)

    threads = [threading.Thread(target=run, args=(d,)) for d in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [True] * 4
    assert day_counts(tiny, [a, b]) == {a: 4000, b: 3000}


def _load_ml_small_base(url: str, source: Path, cutoff: date) -> int:
    """Movies and the history rows, straight into the tables (the day loads are what is tested)."""
    history = scan_ratings(source).filter(pl.col("rated_at").dt.date() <= cutoff).collect()
    with adbc_connect(url) as conn:
        bulk.execute(conn, "TRUNCATE movielens.ratings, movielens.rejected_ratings, movielens.movies")
        bulk.ingest(conn, "movielens", "movies", read_movies(source))
        bulk.ingest(conn, "movielens", "ratings", history)
        conn.commit()
    return history.height


def test_ml_small_every_day_loads_exactly(pg_url: str, ml_small: Path, landing: Path) -> None:
    """Replay and load all 2,915 future days (one loader call, as a single-run backfill does):
    history + partition rows = N exactly, and every day holds exactly its file's rows."""
    manifest = compute_split(scan_ratings(ml_small), dataset_id="ml-small", source_dir=str(ml_small))
    days = day_range_for(manifest.cutoff_day, manifest.last_day, manifest.dataset_id)
    n_history = _load_ml_small_base(pg_url, ml_small, manifest.cutoff_day)
    assert replay(ml_small, landing, manifest=manifest) == days.days()
    report = load_days(pg_url, days.days(), landing)
    assert (len(report.days), report.rows_rejected) == (2915, 0)
    with connect(pg_url) as conn:
        total = conn.execute("SELECT count(*) FROM movielens.ratings").fetchone()[0]
        per_day = dict(conn.execute(
            "SELECT partition_day, count(*) FROM movielens.ratings WHERE partition_day IS NOT NULL GROUP BY 1"
        ).fetchall())
    assert n_history + sum(per_day.values()) == total == 100_836
    csv_counts = {d: len((landing / f"{d.isoformat()}.csv").read_text().splitlines()) - 1 for d in days.days()}
    assert {d: n for d, n in csv_counts.items() if n} == per_day
    # the last 40 days again, through Dagster as one single-run range: counts unchanged
    again = days.days()[-40:]
    result = materialize_days(tiny_asset(days), again[0], again[-1])
    assert len(result.asset_materializations_for_node("daily_partitioned_ratings")) == 40
    assert day_counts(pg_url, again) == {d: per_day[d] for d in again if d in per_day}
    with connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM movielens.ratings").fetchone()[0] == 100_836


def test_overlapping_loads_race_without_loss(tiny: str, landing: Path) -> None:
    """Ranges and single days over the same days, at once: every load commits, counts are exact."""
    from concurrent.futures import ThreadPoolExecutor

    days = [date(1991, 3, 10) + timedelta(days=i) for i in range(4)]
    for i, d in enumerate(days):
        write_day(landing, d, day_lines(d, 6000 + i, user0=1 + i * 10000))
    jobs = [days, [days[3]], [days[0]], days[1:3], [days[2], days[0]], days[::-1], [days[1]], days[2:]]
    with ThreadPoolExecutor(len(jobs)) as pool:
        reports = list(pool.map(lambda batch: load_days(tiny, batch, landing), jobs))
    assert [r.rows_loaded for r in reports] == [sum(6000 + days.index(d) for d in set(b)) for b in jobs]
    assert day_counts(tiny, days) == {d: 6000 + i for i, d in enumerate(days)}


def test_parquet_day_files_get_the_same_validation(tiny: str, landing: Path) -> None:
    day = date(1991, 3, 20)
    good = [(1, 990001, 4.0, ts(day)), (2, 990002, 0.5, ts(day, 7200))]
    bad = [(3, 990003, 4.25, ts(day)), (4, 990001, 3.0, ts(day + timedelta(days=1)))]
    frame = pl.DataFrame(good + bad, schema=["userId", "movieId", "rating", "timestamp"], orient="row")
    frame.write_parquet(landing / "1991-03-20.parquet")
    report = load_days(tiny, [day], landing)
    assert (report.rows_loaded, report.rows_rejected) == (2, 2)
    reasons = [r[1] for r in rejects(tiny, day)]
    assert "not a half step" in reasons[0] and "outside file day 1991-03-20" in reasons[1]
    pl.DataFrame({"user": [1]}).write_parquet(landing / "1991-03-20.parquet")
    with pytest.raises(DayLoadError, match="1991-03-20.parquet.*missing column"):
        load_days(tiny, [day], landing)
    assert day_counts(tiny, [day]) == {day: 2}


def test_lock_plan_orders_months_then_days() -> None:
    from movierec_assets.ingest.days import lock_plan

    february = [date(1991, 2, 1) + timedelta(days=i) for i in range(28)]
    months, day_keys = lock_plan([date(1991, 3, 2), *february, date(1991, 1, 31)])
    assert months == [(1991 * 12 + 0, False), (1991 * 12 + 1, True), (1991 * 12 + 2, False)]
    assert day_keys == [date(1991, 1, 31).toordinal(), date(1991, 3, 2).toordinal()]


def test_a_day_being_loaded_blocks_only_that_day(tiny: str, landing: Path) -> None:
    """Hold day A's lock as a concurrent load would: a load of A waits, a load of B does not."""
    from concurrent.futures import ThreadPoolExecutor

    from movierec_assets.ingest.days import _NS_DAY, _NS_MONTH

    a, b = date(1991, 3, 25), date(1991, 3, 26)
    write_day(landing, a, day_lines(a, 10))
    write_day(landing, b, day_lines(b, 20))
    with connect(tiny) as holder, ThreadPoolExecutor(2) as pool:
        holder.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (_NS_MONTH, a.year * 12 + a.month - 1))
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_NS_DAY, a.toordinal()))
        waiting = pool.submit(load_days, tiny, [a], landing)
        assert pool.submit(load_days, tiny, [b], landing).result(timeout=30).rows_loaded == 20
        assert not waiting.done() and day_counts(tiny, [a]) == {}
        holder.commit()  # the other transaction ends: the waiting load goes on
        assert waiting.result(timeout=30).rows_loaded == 10
    assert day_counts(tiny, [a, b]) == {a: 10, b: 20}


def test_an_unreachable_server_is_a_clear_transient_error(landing: Path) -> None:
    from movierec_assets.db.connect import DatabaseUnavailable

    write_day(landing, D1, day_lines(D1, 3))
    with pytest.raises(DatabaseUnavailable, match="cannot connect") as info:
        load_days("postgresql://someone:s3cr3t-pw@127.0.0.1:9/nowhere", [D1], landing)
    assert "s3cr3t-pw" not in str(info.value)


def test_a_connection_killed_mid_load_is_a_clear_transient_error(tiny: str, landing: Path) -> None:
    """The loader's backend is terminated while it waits inside its transaction: nothing is written,
    the error says the database was lost (so the retry policy applies), and a rerun succeeds."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from movierec_assets.db.connect import DatabaseUnavailable
    from movierec_assets.ingest.days import _NS_DAY

    day = date(1991, 3, 28)
    write_day(landing, day, day_lines(day, 30))
    with connect(tiny) as holder, ThreadPoolExecutor(1) as pool:
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_NS_DAY, day.toordinal()))
        loading = pool.submit(load_days, tiny, [day], landing)
        waiter = None
        for _ in range(200):
            waiter = holder.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
            if waiter:
                break
            time.sleep(0.05)
        assert waiter, "the load never waited for the day lock"
        holder.execute("SELECT pg_terminate_backend(%s)", (waiter[0],))
        with pytest.raises(DatabaseUnavailable, match="lost the database while loading days"):
            loading.result(timeout=30)
    assert day_counts(tiny, [day]) == {}
    assert load_days(tiny, [day], landing).rows_loaded == 30
