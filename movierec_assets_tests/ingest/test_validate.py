"""The strict ratings parser and validator, on hand-made files (exact reasons) and generated input."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec_assets.ingest.load import TooManyRejects, check_reject_share
from movierec_assets.ingest.rules import parse_lines
from movierec_assets.ingest.validate import (
    IngestError,
    parse_ratings_file,
    split_rejects_by_day,
    validate_ratings,
)

HEADER = b"userId,movieId,rating,timestamp\n"

# (line content, expected reason or None when good); line numbers follow from the position.
BAD_FILE = [
    (b"1,1,4.0,964982703", None),
    (b"1,3,4.3,964981247", "rating 4.3 is not a half step in 0.5..5.0"),
    (b"1,6,7,964982224", "rating 7 is outside 0.5..5.0"),
    (b"1,7,0,964982224", "rating 0 is outside 0.5..5.0"),
    (b"abc,1,3,1", "unparseable userId 'abc'"),
    (b"1,2,3", "expected 4 fields, got 3"),
    (b"1,2,3,4,5", "expected 4 fields, got 5"),
    (b"", "empty line"),
    (b"2,1,nan,100", "rating nan is not a finite number"),
    (b"2,1,inf,100", "rating inf is not a finite number"),
    (b"2,1,x,100", "unparseable rating 'x'"),
    (b"3,99999999999,4,5", "movieId 99999999999 out of range 1..2147483647"),
    (b"0,1,4,5", "userId 0 out of range 1..2147483647"),
    (b"4,1,4.5,-5", "timestamp -5 is negative"),
    (b"4,1,4.5,99999999999", "timestamp 99999999999 is after 2100-01-01"),
    (b"4,1,4.5,12:00", "unparseable timestamp '12:00'"),
    (b"6,1,\xff4,5", "not valid UTF-8 (byte 0xff at byte 5)"),
    (b"7,1,4,5\x00", "NUL byte at byte 8"),
    (b" 8,1,4,5", "unparseable userId ' 8'"),
    (b'"9",1,4,5', "unparseable userId '\"9\"'"),
    (b"8,1,4.0,5\r", None),
    (b"10,2,0.5,1000", None),
]


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def bad_file_bytes(eol: bytes = b"\n", bom: bool = False) -> bytes:
    lines = [line.removesuffix(b"\r") + eol if eol == b"\r\n" else line + eol for line, _ in BAD_FILE]
    return (b"\xef\xbb\xbf" if bom else b"") + HEADER.replace(b"\n", eol) + b"".join(lines)


def expected_rejects() -> list[tuple[int, str]]:
    return [(i + 2, reason) for i, (_, reason) in enumerate(BAD_FILE) if reason is not None]


def test_bad_lines_get_exact_reasons_and_line_numbers(tmp_path: Path) -> None:
    parsed = parse_ratings_file(write(tmp_path, "ratings.csv", bad_file_bytes()))
    assert list(parsed.rejected.select("line_number", "reason").iter_rows()) == expected_rejects()
    assert parsed.good.select("user_id", "movie_id", "rating", "line_number").rows() == [
        (1, 1, 4.0, 2),
        (8, 1, 4.0, 22),
        (10, 2, 0.5, 23),
    ]
    assert parsed.good["rated_at"].to_list()[0] == datetime.fromtimestamp(964982703, UTC)
    assert parsed.good.schema == pl.Schema(
        {"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32,
         "rated_at": pl.Datetime("us", "UTC"), "line_number": pl.Int64}
    )  # fmt: skip
    raw = dict(parsed.rejected.select("line_number", "raw_line").iter_rows())
    assert raw[3] == "1,3,4.3,964981247"
    assert raw[18] == "6,1,\ufffd4,5"  # lossy decode, NUL replaced: storable as PostgreSQL text
    assert raw[19] == "7,1,4,5\ufffd"


@pytest.mark.parametrize(("eol", "bom"), [(b"\r\n", False), (b"\n", True), (b"\r\n", True)])
def test_line_endings_and_bom_do_not_matter(tmp_path: Path, eol: bytes, bom: bool) -> None:
    base = parse_ratings_file(write(tmp_path, "lf.csv", bad_file_bytes()))
    other = parse_ratings_file(write(tmp_path, "other.csv", bad_file_bytes(eol, bom)))
    assert other.good.equals(base.good)
    assert other.rejected.select("line_number", "reason").equals(base.rejected.select("line_number", "reason"))


def test_block_boundaries_do_not_change_results(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pool = [line for line, _ in BAD_FILE]
    body = b"".join(pool[i] + b"\n" for i in rng.integers(0, len(pool), 300))
    path = write(tmp_path, "mixed.csv", HEADER + body)
    base = parse_ratings_file(path)
    assert base.n_lines == 300
    for chunk in (7, 256, 4096):  # a line per block (lines longer than a block), a few, all
        other = parse_ratings_file(path, chunk_bytes=chunk)
        assert other.good.equals(base.good)
        assert other.rejected.equals(base.rejected)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "not a ratings CSV"),
        (b"PK\x03\x04" + b"\x00" * 70000, "not a ratings CSV"),
        (b"<html><body>not found</body></html>\n", "missing column(s) userId, movieId, rating, timestamp"),
        (b"userId,movieId,rating\n1,2,3\n", "missing column(s) timestamp"),
        (b"userId,movieId,rating,timestamp,extra\n", "unexpected column(s) 'extra'"),
        (b"movieId,userId,rating,timestamp\n", "columns out of order"),
        (b"1,1,4.0,964982703\n", "missing column(s)"),
    ],
)
def test_not_a_ratings_csv_raises_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, "weird-ratings.csv", content)
    with pytest.raises(IngestError) as err:
        parse_ratings_file(path)
    assert str(err.value).startswith("weird-ratings.csv: ")
    assert message in str(err.value)
    with pytest.raises(IngestError, match="landing/2020-01-01.csv"):
        parse_ratings_file(path, source_name="landing/2020-01-01.csv")


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nope.csv: cannot read"):
        parse_ratings_file(tmp_path / "nope.csv")


def test_header_only_and_no_final_newline(tmp_path: Path) -> None:
    assert parse_ratings_file(write(tmp_path, "h.csv", HEADER)).n_lines == 0
    assert parse_ratings_file(write(tmp_path, "h2.csv", HEADER.rstrip())).n_lines == 0
    parsed = parse_ratings_file(write(tmp_path, "t.csv", HEADER + b"1,2,3.5,10\n3,4,5.0,20"))
    assert parsed.good.select("user_id", "movie_id", "rating").rows() == [(1, 2, 3.5), (3, 4, 5.0)]


def test_very_long_lines_are_rejected_in_bounded_memory(tmp_path: Path) -> None:
    long_line = b"1,2,3," + b"9" * (10 * 1024 * 1024)
    path = write(tmp_path, "long.csv", HEADER + b"1,1,4.0,5\n" + long_line + b"\n2,2,2.5,6\n")
    for chunk in (1024 * 1024, 64 * 1024 * 1024):  # longer than a block, and within one
        parsed = parse_ratings_file(path, chunk_bytes=chunk)
        assert parsed.good["line_number"].to_list() == [2, 4]
        (line_number, raw, reason), = parsed.rejected.rows()
        assert line_number == 3
        assert reason == f"line too long ({len(long_line)} bytes, limit 4096)"
        assert raw.startswith("1,2,3,999") and len(raw) <= 1003


def test_long_line_with_valid_values_is_still_rejected(tmp_path: Path) -> None:
    padded = b"1,2,3.5," + b"0" * 5000 + b"1"  # parses as 1,2,3.5,1 but is no rating line
    parsed = parse_ratings_file(write(tmp_path, "pad.csv", HEADER + b"1,1,4.0,5\n" + padded + b"\n"))
    assert parsed.rejected.select("line_number", "reason").rows() == [(3, "line too long (5009 bytes, limit 4096)")]


def test_validate_rejects_unknown_movies_and_later_duplicates(tmp_path: Path) -> None:
    body = b"".join(
        line + b"\n"
        for line in [
            b"5,10,4.0,1000",  # 2
            b"1,10,3.0,1000",  # 3
            b"1,99,3.0,1000",  # 4 unknown movie
            b"5,10,2.0,1000",  # 5 duplicate of line 2 (same user, movie, timestamp)
            b"5,10,2.0,1001",  # 6 other timestamp: kept
            b"5,10,1.0,1000",  # 7 duplicate of line 2 again
            b"1,11,3.0,1000",  # 8
        ]
    )
    parsed = parse_ratings_file(write(tmp_path, "r.csv", HEADER + body))
    good, rejected = validate_ratings(parsed.good, pl.Series([10, 11]))
    assert rejected.rows() == [
        (4, "1,99,3.0,1000", "unknown movieId 99"),
        (5, "5,10,2.0,1000", "duplicate of line 2"),
        (7, "5,10,1.0,1000", "duplicate of line 2"),
    ]
    # Kept rows come sorted by the primary key (user, movie, time): the fast order for the index build.
    assert good.select("user_id", "movie_id", "line_number").rows() == [(1, 10, 3), (1, 11, 8), (5, 10, 2), (5, 10, 6)]
    assert good.schema == parsed.good.schema


def test_validate_expected_day(tmp_path: Path) -> None:
    day = date(2018, 1, 1)
    t0 = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp())
    body = f"1,1,4.0,{t0}\n1,2,4.0,{t0 + 86399}\n1,3,4.0,{t0 + 86400}\n1,4,4.0,{t0 - 1}\n".encode()
    parsed = parse_ratings_file(write(tmp_path, "2018-01-01.csv", HEADER + body))
    good, rejected = validate_ratings(parsed.good, None, expected_day=day)
    assert good["movie_id"].to_list() == [1, 2]
    assert rejected.select("line_number", "reason").rows() == [
        (4, "timestamp 2018-01-02T00:00:00Z outside file day 2018-01-01"),
        (5, "timestamp 2017-12-31T23:59:59Z outside file day 2018-01-01"),
    ]


def test_split_rejects_by_day() -> None:
    cutoff = date(2000, 1, 1)
    t_after = int(datetime(2000, 1, 2, tzinfo=UTC).timestamp())
    rejected = pl.DataFrame(
        {
            "line_number": [2, 3, 4, 5],
            "raw_line": ["1,2,9,100", f"1,2,9,{t_after}", "garbage", "1,2,3,-7"],
            "reason": ["a", "b", "c", "d"],
        }
    )
    history, future = split_rejects_by_day(rejected, cutoff)
    assert history["line_number"].to_list() == [2, 4, 5]
    assert future["line_number"].to_list() == [3]


def test_check_reject_share_names_file_counts_and_samples() -> None:
    check_reject_share(990, 10, 0.01)
    check_reject_share(0, 0, 0.01)
    rejected = pl.DataFrame({"line_number": [7, 9], "raw_line": ["x", "y"], "reason": ["unparseable userId 'x'", "r"]})
    with pytest.raises(TooManyRejects) as err:
        check_reject_share(98, 2, 0.01, source_file="data/ratings.csv", rejected=rejected)
    message = str(err.value)
    assert message.startswith("data/ratings.csv: 2 of 100 rows rejected (2.00%)")
    assert "line 7: unparseable userId 'x'" in message and "nothing was loaded" in message


# -- properties --------------------------------------------------------------------------------------
PLAIN_TEXT = st.text(alphabet="0123456789.-", max_size=12)
VALID_FIELDS = st.tuples(
    st.integers(1, 2**31 - 1).map(str),
    st.integers(1, 2**31 - 1).map(str),
    st.sampled_from(["0.5", "1", "2.5", "4.0", "5", "5.", ".5"]),
    st.integers(0, 4102444800).map(str),
).map(list)


@st.composite
def plain_line(draw: st.DrawFn) -> str:
    """A valid line, often damaged: a field replaced, fields added or dropped (plain bytes only)."""
    fields = draw(VALID_FIELDS)
    action = draw(st.sampled_from(["keep", "replace", "append", "drop"]))
    if action == "replace":
        fields[draw(st.integers(0, 3))] = draw(PLAIN_TEXT)
    elif action == "append":
        fields += draw(st.lists(PLAIN_TEXT, min_size=1, max_size=2))
    elif action == "drop":
        del fields[draw(st.integers(0, 3)) :]
    return ",".join(fields)


PLAIN_LINE = st.one_of(plain_line(), st.lists(PLAIN_TEXT, min_size=1, max_size=6).map(",".join))
VALID_ROW = st.tuples(
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.integers(1, 10).map(lambda k: k / 2),
    st.integers(0, 4102444800),
)


def _tmp_file(data: bytes) -> Path:
    import tempfile

    fd, name = tempfile.mkstemp(suffix=".csv")
    with open(fd, "wb") as f:
        f.write(data)
    return Path(name)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_never_crash(data: bytes, with_header: bool) -> None:
    path = _tmp_file((HEADER if with_header else b"") + data)
    try:
        parsed = parse_ratings_file(path)
    except IngestError:
        assert not with_header
        return
    finally:
        path.unlink()
    body = data if with_header else data[data.find(b"\n") + 1 :]
    expected_lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    assert parsed.n_lines == expected_lines  # every line is good or rejected, exactly once
    assert not parsed.rejected["raw_line"].str.contains("\x00", literal=True).any()
    good, rejected = validate_ratings(parsed.good, None)
    assert good.height + rejected.height == parsed.good.height


@settings(max_examples=150, deadline=None)
@given(st.lists(PLAIN_LINE, min_size=1, max_size=30))
def test_fast_path_agrees_with_the_rules(lines: list[str]) -> None:
    """Lines the fast CSV reader sees are judged exactly as the line rules judge them."""
    body = "".join(line + "\n" for line in lines).encode()
    path = _tmp_file(HEADER + body)
    try:
        parsed = parse_ratings_file(path)
    finally:
        path.unlink()
    good, rejected = parse_lines(body, np.arange(2, 2 + len(lines)))
    assert parsed.good.equals(good)
    assert parsed.rejected.equals(rejected)


@settings(max_examples=100, deadline=None)
@given(st.lists(VALID_ROW, max_size=40), st.sampled_from([b"\n", b"\r\n"]))
def test_valid_rows_round_trip_exactly(rows: list[tuple[int, int, float, int]], eol: bytes) -> None:
    body = b"".join(f"{u},{m},{r},{t}".encode() + eol for u, m, r, t in rows)
    path = _tmp_file(HEADER.replace(b"\n", eol) + body)
    try:
        parsed = parse_ratings_file(path)
    finally:
        path.unlink()
    assert parsed.rejected.height == 0
    got = parsed.good.select("user_id", "movie_id", "rating", pl.col("rated_at").dt.epoch("s")).rows()
    assert got == [(u, m, r, t) for u, m, r, t in rows]
