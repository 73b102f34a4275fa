"""Landing-zone names and files: strict validation, logged reasons, content hashes."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import date
from pathlib import Path

import pytest

from movierec_assets.ingest.landing import (
    LandingError,
    content_hash,
    day_file,
    landing_dir,
    missing_days,
    parse_day_name,
    scan,
)

FIRST, LAST = date(2018, 1, 1), date(2018, 12, 31)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x.csv", "path parts"),
        ("../2018-01-02.csv", "path parts"),
        ("sub/2018-01-02.csv", "path parts"),
        ("2018-13-40.csv", "not a real calendar date"),
        ("2018-02-30.csv", "not a real calendar date"),
        ("2017-12-31.csv", "outside the partition range"),
        ("2019-01-01.parquet", "outside the partition range"),
        ("2018-01-02.txt", "YYYY-MM-DD"),
        ("2018-1-2.csv", "YYYY-MM-DD"),
        ("2018-01-02.csv.bak", "YYYY-MM-DD"),
        (" 2018-01-02.csv", "YYYY-MM-DD"),
        ("2018-01-02.CSV", "YYYY-MM-DD"),
        ("", "path parts"),
    ],
)
def test_bad_names_are_refused_with_a_reason(name: str, why: str) -> None:
    day, reason = parse_day_name(name, FIRST, LAST)
    assert day is None and why in reason


def test_good_names() -> None:
    assert parse_day_name("2018-01-01.csv", FIRST, LAST) == (date(2018, 1, 1), "")
    assert parse_day_name("2018-12-31.parquet", FIRST, LAST) == (date(2018, 12, 31), "")


def test_scan_keeps_only_plain_day_files_and_logs_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "2018-03-01.csv").write_text("userId,movieId,rating,timestamp\n")
    (tmp_path / "2018-03-02.parquet").write_bytes(b"PAR1")
    (tmp_path / "2018-13-40.csv").write_text("x")
    (tmp_path / "2016-01-01.csv").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".2018-03-05.csv.tmp-abc").write_text("half")  # replay's in-flight file: silent
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("userId,movieId,rating,timestamp\n")
    os.symlink(outside, tmp_path / "2018-03-03.csv")
    os.mkdir(tmp_path / "2018-03-04.csv")
    (tmp_path / "2018-03-06.csv").write_text("a")  # the same day twice: ambiguous, both ignored
    (tmp_path / "2018-03-06.parquet").write_bytes(b"b")
    with caplog.at_level(logging.INFO, logger="movierec_assets.ingest.landing"):
        found = scan(tmp_path, FIRST, LAST)
    assert sorted(found) == [date(2018, 3, 1), date(2018, 3, 2)]
    assert found[date(2018, 3, 1)].size == len("userId,movieId,rating,timestamp\n")
    log = caplog.text
    for expected in ("'2018-13-40.csv': not a real calendar date", "'2016-01-01.csv': day 2016-01-01 is outside",
                     "'notes.txt': name is not", "'2018-03-03.csv': is a symlink",
                     "'2018-03-04.csv': not a regular file", "day 2018-03-06: both .csv and .parquet"):
        assert expected in log
    assert ".tmp-" not in log


def test_day_file_names_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match=str(tmp_path / "2018-05-01.csv")):
        day_file(tmp_path, date(2018, 5, 1))
    target = tmp_path / "elsewhere.csv"
    target.write_text("x")
    os.symlink(target, tmp_path / "2018-05-02.csv")
    with pytest.raises(LandingError, match="is a symlink"):
        day_file(tmp_path, date(2018, 5, 2))
    (tmp_path / "2018-05-03.csv").write_text("x")
    assert day_file(tmp_path, date(2018, 5, 3)).path == tmp_path / "2018-05-03.csv"


def test_content_hash_and_missing_days(tmp_path: Path) -> None:
    path = tmp_path / "2018-05-03.csv"
    path.write_bytes(b"abc" * 1000)
    assert content_hash(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert missing_days(tmp_path, [date(2018, 5, 2), date(2018, 5, 3)]) == [date(2018, 5, 2)]
    assert missing_days(tmp_path / "absent", [date(2018, 5, 3)]) == [date(2018, 5, 3)]


def test_landing_dir_is_configurable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(tmp_path / "drop"))
    assert landing_dir() == tmp_path / "drop"
    monkeypatch.delenv("MOVIEREC_LANDING_DIR")
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    assert landing_dir() == tmp_path / "landing" / "ratings"


def test_a_file_replaced_after_listing_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "2018-05-04.csv"
    path.write_text("userId,movieId,rating,timestamp\n")
    listed = day_file(tmp_path, date(2018, 5, 4))
    assert listed.unchanged()
    target = tmp_path / "elsewhere.csv"
    target.write_text("userId,movieId,rating,timestamp\n")
    path.unlink()
    os.symlink(target, path)  # swapped for a symlink between listing and reading
    assert not listed.unchanged()
    path.unlink()
    path.write_text("userId,movieId,rating,timestamp\n1,2,3.0,4\n")  # a new delivery
    assert not listed.unchanged()
