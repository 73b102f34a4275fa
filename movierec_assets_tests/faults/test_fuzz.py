"""Property tests (Hypothesis) of the strict ratings parser, the validator and the landing-name rule.

- Any bytes at all: `parse_ratings_file` either raises `IngestError` or accounts for every line
  exactly once (good + rejected == data lines), and never crashes otherwise.
- Valid rows, however they are written (CRLF, BOM, "4" or "4.0"), round-trip exactly.
- `validate_ratings` never loses a row: kept + rejected == input, and kept has no duplicate key.
- A landing file name is accepted only if it is exactly the canonical `YYYY-MM-DD.csv|parquet` of
  the day it stands for (no look-alike digits, no trailing newline, no path parts).

The API's OpenAPI schemathesis run lives with the serving tests (movierec_assets_tests/serving).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec_assets.ingest.landing import day_file_name, parse_day_name
from movierec_assets.ingest.validate import IngestError, parse_ratings_file, validate_ratings
from movierec_assets_tests.faults.conftest import FaultRecord

pytestmark = pytest.mark.faults

HEADER = b"userId,movieId,rating,timestamp"
MAX_TS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_line_piece = st.sampled_from(
    [b"1", b"42", b"2147483647", b"2147483648", b"-3", b"0", b"4.5", b"4", b"NaN", b"inf", b"-inf", b"1e3",
     b"3.25", b"", b",", b" ", b"\r", b"\x00", b"\xff", b"\xc3\xa9", b"'); DROP TABLE movielens.ratings; --",
     b"=cmd|' /C calc'!A0", b"\"", b"9" * 30, b"978300760", b"-1", b"99999999999"]
)
_lines = st.lists(st.lists(_line_piece, min_size=0, max_size=6).map(lambda ps: b",".join(ps)), max_size=25)


def _parse_bytes(data: bytes, chunk_bytes: int = 1 << 26) -> tuple[object, int]:
    fd, name = tempfile.mkstemp(suffix=".csv")
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            return parse_ratings_file(Path(name), chunk_bytes=chunk_bytes), 0
        except IngestError as exc:
            return exc, 0
    finally:
        os.unlink(name)


def _data_lines(body: bytes) -> int:
    """Lines after the header, as the parser counts them (a final line without a break counts)."""
    if not body:
        return 0
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1)


@pytest.mark.fault_scenario("fuzzing", "Hypothesis: arbitrary bytes into the ratings parser")
def test_any_bytes_parse_or_ingest_error(fault: FaultRecord) -> None:
    @FUZZ
    @given(raw=st.binary(max_size=400), lines=_lines, header=st.booleans(), crlf=st.booleans(),
           chunk=st.sampled_from([16, 64, 1 << 26]))
    def prop(raw: bytes, lines: list[bytes], header: bool, crlf: bool, chunk: int) -> None:
        sep = b"\r\n" if crlf else b"\n"
        body = sep.join(lines) + (sep if lines else b"") + raw
        data = (HEADER + sep + body) if header else raw
        fault.tried += 1
        result, _ = _parse_bytes(data, chunk)
        if isinstance(result, IngestError):
            assert str(result)  # a clear message, naming the file
            fault.survived += 1
            return
        assert header or data.startswith(HEADER), "a file without the header must be refused"
        n = _data_lines(data[data.index(b"\n") + 1:]) if b"\n" in data else 0
        got = result.good.height + result.rejected.height  # type: ignore[attr-defined]
        fault.data_lost += abs(n - got)
        assert got == n, f"{n} data lines, {got} accounted for"
        assert result.rejected["reason"].null_count() == 0  # type: ignore[attr-defined]
        fault.survived += 1

    prop()


_ratings = st.lists(
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1), st.integers(1, 10), st.integers(0, MAX_TS)),
    min_size=0, max_size=40,
)


@pytest.mark.fault_scenario("fuzzing", "Hypothesis: valid rows round-trip, validator loses nothing")
def test_valid_rows_round_trip_and_validator_keeps_every_row(fault: FaultRecord) -> None:
    @FUZZ
    @given(rows=_ratings, crlf=st.booleans(), bom=st.booleans(), short=st.booleans(), chunk=st.sampled_from([40, 1 << 26]))
    def prop(rows: list[tuple[int, int, int, int]], crlf: bool, bom: bool, short: bool, chunk: int) -> None:
        sep = b"\r\n" if crlf else b"\n"
        text = [f"{u},{m},{(r / 2):g}" if short else f"{u},{m},{r / 2:.1f}" for u, m, r, _ in rows]
        body = sep.join(f"{t},{ts}".encode() for t, (*_, ts) in zip(text, rows, strict=True))
        data = (b"\xef\xbb\xbf" if bom else b"") + HEADER + sep + body + (sep if rows else b"")
        fault.tried += 1
        parsed, _ = _parse_bytes(data, chunk)
        assert not isinstance(parsed, IngestError), parsed
        good = parsed.good  # type: ignore[attr-defined]
        assert parsed.rejected.height == 0, parsed.rejected.rows()  # type: ignore[attr-defined]
        got = list(zip(good["user_id"], good["movie_id"], (good["rating"] * 2).cast(pl.Int32),
                       good["rated_at"].dt.epoch("s"), strict=True))
        assert got == [tuple(r) for r in rows]
        assert good["line_number"].to_list() == list(range(2, len(rows) + 2))
        kept, rejected = validate_ratings(good, None)
        assert kept.height + rejected.height == good.height
        assert kept.select("user_id", "movie_id", "rated_at").is_unique().all()
        assert {tuple(r[:2]) + (r[3],) for r in rows} == set(
            zip(kept["user_id"], kept["movie_id"], kept["rated_at"].dt.epoch("s"), strict=True))
        fault.survived += 1

    prop()


_DIGITS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "0123456789", "0123456789"]  # ASCII, Arabic-Indic, fullwidth


def _look_alike(t: tuple[date, list[str], str]) -> str:
    """A day's name with each digit drawn from one of several Unicode digit sets, plus a suffix."""
    day, sets, suffix = t
    digits = iter(sets)
    name = "".join(next(digits)[int(c)] if c.isdigit() else c for c in day.isoformat())
    return name + suffix


@pytest.mark.fault_scenario("fuzzing", "Hypothesis: landing-zone file names")
def test_landing_names_accepted_only_in_canonical_form(fault: FaultRecord) -> None:
    first, last = date(1990, 1, 1), date(2030, 12, 31)

    @FUZZ
    @given(name=st.one_of(
        st.text(max_size=30),
        st.dates(date(1, 1, 1), date(9999, 12, 31)).map(lambda d: d.isoformat() + ".csv"),
        st.tuples(st.dates(date(1985, 1, 1), date(2035, 12, 31)), st.lists(st.sampled_from(_DIGITS), min_size=8,
                  max_size=8), st.sampled_from([".csv", ".parquet", ".csv\n", ".CSV", ".csv/..", "/../x.csv", ".csv "]))
        .map(_look_alike),
    ))
    def prop(name: str) -> None:
        fault.tried += 1
        day, why = parse_day_name(name, first, last)
        if day is None:
            assert why
        else:
            assert name in (day_file_name(day, ".csv"), day_file_name(day, ".parquet")), name
            assert first <= day <= last
        fault.survived += 1

    prop()
