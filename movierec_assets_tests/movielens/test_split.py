"""The history/future split rule, checked independently, and the manifest lifecycle."""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from movierec_assets.movielens import split
from movierec_assets.movielens.source import read_ratings, scan_ratings
from movierec_assets.movielens.split import SplitManifest, compute_split, future_frame, history_frame


def _independent_split(csv: Path, fraction: float) -> tuple[int, date, date]:
    """The rule with plain Python: sort (timestamp, user, movie) tuples, take the H-th."""
    rows = []
    with open(csv, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user, movie, _, ts = line.strip().split(",")
            rows.append((int(ts), int(user), int(movie)))
    rows.sort()
    h = math.floor(fraction * len(rows))

    def day(ts: int) -> date:
        return datetime.fromtimestamp(ts, tz=UTC).date()

    cutoff = day(rows[h - 1][0])
    n_history = sum(1 for ts, _, _ in rows if day(ts) <= cutoff)
    return n_history, cutoff, day(rows[-1][0])


@pytest.mark.parametrize("fraction", [0.625, 0.3])
def test_ml_small_split_matches_independent_rule(ml_small: Path, fraction: float) -> None:
    m = compute_split(scan_ratings(ml_small), fraction=fraction)
    assert (m.n_history, m.cutoff_day, m.last_day) == _independent_split(ml_small / "ratings.csv", fraction)
    assert m.n_ratings == 100_836 and m.n_history >= math.floor(fraction * 100_836)
    ratings = scan_ratings(ml_small)
    n_hist = history_frame(ratings, m).select(pl.len()).collect().item()
    n_fut = future_frame(ratings, m).select(pl.len()).collect().item()
    assert n_hist == m.n_history and n_hist + n_fut == 100_836
    days = m.future_days()
    assert days[0] == m.cutoff_day + timedelta(days=1) and days[-1] == m.last_day
    assert len(days) == (m.last_day - m.cutoff_day).days and len(set(days)) == len(days)
    per_day = sum(future_frame(ratings, m, d).select(pl.len()).collect().item() for d in days[-30:])
    tail = future_frame(ratings, m).filter(split.day_of("rated_at") >= days[-30]).select(pl.len())
    assert per_day == tail.collect().item() > 0


def _frame(times: list[str]) -> pl.LazyFrame:
    ts = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in times]
    return pl.LazyFrame(
        {
            "user_id": list(range(len(ts))),
            "movie_id": [1] * len(ts),
            "rating": [4.0] * len(ts),
            "rated_at": ts,
        },
        schema={
            "user_id": pl.Int32,
            "movie_id": pl.Int32,
            "rating": pl.Float32,
            "rated_at": pl.Datetime("us", "UTC"),
        },
    )


def test_exact_tiny_split() -> None:
    # 8 ratings over 4 days; H = floor(0.625 * 8) = 5 -> the 5th rating is on Jan 3.
    lf = _frame(["2020-01-01T10:00", "2020-01-01T23:59:59", "2020-01-02T00:00", "2020-01-03T01:00",
                 "2020-01-03T23:00", "2020-01-03T23:30", "2020-01-05T00:00", "2020-01-05T12:00"])  # fmt: skip
    m = compute_split(lf)
    assert (m.n_ratings, m.n_history, m.cutoff_day, m.last_day) == (8, 6, date(2020, 1, 3), date(2020, 1, 5))
    assert m.partition_keys() == ["2020-01-04", "2020-01-05"]
    assert compute_split(lf, history_count=1).cutoff_day == date(2020, 1, 1)
    assert compute_split(lf, history_count=3).n_history == 3
    full = compute_split(lf, fraction=1.0)
    assert full.cutoff_day == full.last_day and full.future_days() == []
    with pytest.raises(ValueError, match="between 1 and N=8"):
        compute_split(lf, history_count=9)
    with pytest.raises(ValueError, match="selects no rating"):
        compute_split(lf, fraction=0.1)
    with pytest.raises(ValueError, match="no ratings"):
        compute_split(_frame([]))


def test_day_of_is_utc_even_for_other_zones() -> None:
    df = pl.DataFrame({"rated_at": [datetime(2020, 1, 1, 23, 30, tzinfo=UTC)]}).with_columns(
        pl.col("rated_at").dt.convert_time_zone("America/New_York")
    )
    assert df.select(split.day_of("rated_at")).item() == date(2020, 1, 1)


def test_manifest_json_roundtrip_and_bad_file(tmp_path: Path) -> None:
    m = SplitManifest("ds-1", "/data/x", 10, 7, None, date(2020, 1, 3), date(2020, 2, 1), history_count=6)
    split.write_manifest(tmp_path / "m.json", m)
    assert split.read_manifest(tmp_path / "m.json") == m
    (tmp_path / "bad.json").write_text('{"dataset_id": "x"}')
    with pytest.raises(ValueError, match=r"bad\.json: not a valid split manifest"):
        split.read_manifest(tmp_path / "bad.json")


def _copy_ratings(src: Path, dst: Path, drop_last: int = 0) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    lines = (src / "ratings.csv").read_bytes().splitlines(keepends=True)
    (dst / "ratings.csv").write_bytes(b"".join(lines[: len(lines) - drop_last]))
    (dst / "movies.csv").write_bytes((src / "movies.csv").read_bytes())
    return dst


def test_split_manifest_is_a_function_of_the_content(
    ml_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_ratings(ml_small, tmp_path / "ml")
    m = split.split_manifest(data)
    assert m.source_dir == str(data) and m.dataset_id == split.dataset_identity(data)
    assert m.n_history == compute_split(read_ratings(data).lazy()).n_history
    assert not (tmp_path / "home").exists() and sorted(os.listdir(data)) == ["movies.csv", "ratings.csv"]
    calls: list[int] = []
    monkeypatch.setattr(split, "compute_split", lambda *a, **k: calls.append(1))
    assert split.split_manifest(data) == m and not calls  # memoised in the process
    monkeypatch.undo()
    by_count = split.split_manifest(data, history_count=1000)
    assert by_count.history_count == 1000 and by_count.history_fraction is None
    _copy_ratings(ml_small, data, drop_last=5)  # the data changed: a new identity and a new split
    changed = split.split_manifest(data)
    assert changed.dataset_id != m.dataset_id and changed.n_ratings == m.n_ratings - 5


def test_the_disk_cache_is_best_effort_and_keyed_by_content(
    ml_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_ratings(ml_small, tmp_path / "ml")
    cache = tmp_path / "cache"
    m = split.split_manifest(data, cache_dir=cache, write_cache=True)
    assert [p.name for p in cache.iterdir()] == [f"{m.dataset_id}.f0.625.json"]
    split._MEMO.clear()
    calls: list[int] = []
    monkeypatch.setattr(split, "compute_split", lambda *a, **k: calls.append(1))
    assert split.split_manifest(data, cache_dir=cache) == m and not calls  # read from the cache
    monkeypatch.undo()
    split._MEMO.clear()
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")  # the cache cannot be written: the split is still computed
    assert split.split_manifest(data, cache_dir=blocked, write_cache=True) == m


def test_the_synthetic_default_split_is_what_generation_gives(tmp_path: Path) -> None:
    from movierec_assets.movielens.synth import DEFAULT_RATINGS, DEFAULT_SEED, write_synthetic

    target = tmp_path / "datasets" / "synthetic-default"
    expected = split.expected_manifest(target, target)  # before it exists: the constant
    assert expected.source_dir == str(target) and expected.future_days()
    write_synthetic(target, DEFAULT_RATINGS, DEFAULT_SEED)
    assert split.expected_manifest(target, target) == expected


def test_dataset_identity_is_stable_and_content_sensitive(ml_small: Path, tmp_path: Path) -> None:
    a = _copy_ratings(ml_small, tmp_path / "a" / "ml")
    b = _copy_ratings(ml_small, tmp_path / "b" / "ml")
    assert split.dataset_identity(a) == split.dataset_identity(b) == split.dataset_identity(a)
    raw = bytearray((b / "ratings.csv").read_bytes())
    raw[-3] = ord("9") if raw[-3] != ord("9") else ord("8")  # same size, last line differs
    (b / "ratings.csv").write_bytes(bytes(raw))
    assert split.dataset_identity(a) != split.dataset_identity(b)


def test_lines_a_typed_reader_cannot_read_are_left_out_of_the_split(tmp_path: Path) -> None:
    day = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp())
    good = [f"{u},1,4.0,{day + 86_400 * u}" for u in range(1, 9)]
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    for root, lines in ((clean, good), (dirty, [*good[:4], "garbage line", "9,1,x,oops", *good[4:]])):
        root.mkdir()
        (root / "movies.csv").write_text("movieId,title,genres\n1,A (1999),Drama\n")
        (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n")
    a, b = split.split_manifest(clean), split.split_manifest(dirty)
    assert (b.n_ratings, b.cutoff_day, b.last_day) == (a.n_ratings, a.cutoff_day, a.last_day) == (8, date(2001, 1, 6), date(2001, 1, 9))
