"""The strict MovieLens ratings parser and validator.

`parse_ratings_file` turns a `userId,movieId,rating,timestamp` file into good rows (the ratings
contract plus `line_number`) and rejected rows (line number, raw line, a short specific reason).
It accepts any bytes: a file that is not a ratings CSV at all raises `IngestError` naming the file;
every other problem is confined to its line. `validate_ratings` then applies the rules that need
context (known movie ids, duplicates, the day a partition file covers).

Speed: each block of lines goes through Polars' multi-threaded CSV reader; a line is accepted
there only if it holds nothing but digits, '.', '-' and three commas and its values pass the
range checks. Every other line is handed to `rules.parse_lines`, the authority, which gives it
a reason. Nothing is looped over per line in Python except lines holding non-ASCII or NUL bytes.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from movierec_assets.ingest.lines import (
    CHUNK_BYTES,
    UTF8_BOM,
    OverlongLine,
    iter_line_blocks,
    line_breaks,
    lines_with_bytes,
    take_lines,
)
from movierec_assets.ingest.rules import (
    GOOD_SCHEMA,
    MAX_LINE_BYTES,
    MAX_TIMESTAMP,
    RATED_AT,
    REJECTED_SCHEMA,
    empty_good,
    empty_rejected,
    good_rows,
    parse_lines,
    values_ok,
)

HEADER = ("userId", "movieId", "rating", "timestamp")
MAX_HEADER_BYTES = 64 * 1024
KEY = ["user_id", "movie_id", "rated_at"]  # the duplicate rule, and the table's primary key

# Ids beyond int32 fail to parse (null), so they go to the rules; ratings stay Float64 so that
# "4.5000001" is not rounded into a valid value.
_FAST_SCHEMA = {"u": pl.Int32, "m": pl.Int32, "r": pl.Float64, "t": pl.Int64}
_PLAIN = b"0123456789,.-\n"  # the only bytes the fast path accepts (plus \r before \n)
_NOT_PLAIN = np.ones(256, dtype=bool)
_NOT_PLAIN[list(_PLAIN)] = False

__all__ = [
    "GOOD_SCHEMA",
    "REJECTED_SCHEMA",
    "IngestError",
    "ParsedRatings",
    "empty_rejected",
    "parse_ratings_file",
    "split_rejects_by_day",
    "validate_ratings",
]


class IngestError(ValueError):
    """A source file cannot be ingested at all (not a ratings CSV, wrong header, too many bad rows)."""


@dataclass(frozen=True)
class ParsedRatings:
    good: pl.DataFrame  # GOOD_SCHEMA, in line order
    rejected: pl.DataFrame  # REJECTED_SCHEMA, in line order

    @property
    def n_lines(self) -> int:
        return self.good.height + self.rejected.height


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_header(first: bytes, name: str) -> None:
    """Raise `IngestError` unless the first line is exactly the ratings header."""
    if not first:
        raise IngestError(f"{name}: empty file, expected the header {','.join(HEADER)!r}")
    if not first.endswith(b"\n") and len(first) >= MAX_HEADER_BYTES:
        raise IngestError(f"{name}: not a ratings CSV (no line break in the first {MAX_HEADER_BYTES} bytes)")
    line = first.removeprefix(UTF8_BOM).removesuffix(b"\n").removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(f"{name}: not a ratings CSV (the first line is not UTF-8 text)") from None
    if "\x00" in text:
        raise IngestError(f"{name}: not a ratings CSV (the first line holds NUL bytes)")
    if text == ",".join(HEADER):
        return
    columns = [c.strip() for c in text.split(",")]
    missing = [c for c in HEADER if c not in columns]
    extra = [c for c in columns if c not in HEADER]
    detail = []
    if missing:
        detail.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        detail.append(f"unexpected column(s) {', '.join(_show(c, 30) for c in extra[:5])}")
    if not detail:
        detail.append("columns out of order or padded")
    raise IngestError(f"{name}: bad header {_show(text)}: {'; '.join(detail)} (expected {','.join(HEADER)!r})")


# -- one block -------------------------------------------------------------------------------------
def _fast_frame(data: bytes, n: int) -> pl.DataFrame | None:
    """Polars' CSV reader over the block; None when it cannot keep one row per line."""
    try:
        df = pl.read_csv(
            data, has_header=False, schema=_FAST_SCHEMA, quote_char=None, ignore_errors=True,
            truncate_ragged_lines=True,
        )  # fmt: skip
    except pl.exceptions.PolarsError:
        return None
    return df if df.height == n else None


def _suspect_lines(data: bytes, breaks: np.ndarray, fast: pl.DataFrame) -> np.ndarray:
    """Lines the fast reader may have misread: other bytes than _PLAIN (a \\r only right before the
    \\n), not exactly three commas, or too long. Cheap whole-block counts skip the per-line work."""
    n = len(breaks)
    suspect = np.diff(breaks, prepend=-1) - 1 > MAX_LINE_BYTES
    other = data.translate(None, _PLAIN)  # usually empty, or only the \r of CRLF line ends
    clean_bytes = not other or (not other.translate(None, b"\r") and len(other) == data.count(b"\r\n"))
    raw = np.frombuffer(data, dtype=np.uint8)
    if not clean_bytes:
        odd = _NOT_PLAIN[raw]
        cr = np.flatnonzero(raw == 13)
        odd[cr[raw[np.minimum(cr + 1, len(raw) - 1)] == 10]] = False
        suspect[lines_with_bytes(breaks, odd)] = True
    # Exactly 3n commas and no missing field means exactly three commas on every line.
    if data.count(b",") != 3 * n or fast.null_count().sum_horizontal().item():
        commas = np.bincount(np.searchsorted(breaks, np.flatnonzero(raw == 44)), minlength=n)
        suspect |= commas != 3
    return suspect


def _parse_block(data: bytes, first: int) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(good rows, rejected rows, number of lines) of a block whose first line is `first`."""
    breaks = line_breaks(data)
    n = len(breaks)
    fast = _fast_frame(data, n)
    if fast is None:
        return *parse_lines(data, first + np.arange(n)), n
    ok = fast.select(values_ok()).to_series().to_numpy() & ~_suspect_lines(data, breaks, fast)
    numbered = fast.with_columns(line_number=pl.int_range(first, first + n))
    if ok.all():
        return good_rows(numbered), empty_rejected(), n
    good = good_rows(numbered.filter(ok))
    rest = np.flatnonzero(~ok)
    slow_good, rejected = parse_lines(take_lines(data, rest), first + rest)
    if slow_good.height:
        good = pl.concat([good, slow_good]).sort("line_number")
    return good, rejected, n


def _overlong_reject(line: OverlongLine, line_number: int) -> pl.DataFrame:
    head = line.head.decode("utf-8", "replace").replace("\x00", "\ufffd")
    reason = f"line too long ({line.length} bytes, limit {MAX_LINE_BYTES})"
    return pl.DataFrame(
        {"line_number": [line_number], "raw_line": [head + "..."], "reason": [reason]}, schema=REJECTED_SCHEMA
    )


def _parse_buffer(buf: mmap.mmap | bytes, name: str, chunk_bytes: int) -> ParsedRatings:
    header_end = buf.find(b"\n", 0, MAX_HEADER_BYTES)
    _check_header(buf[: MAX_HEADER_BYTES if header_end < 0 else header_end + 1], name)
    goods: list[pl.DataFrame] = [empty_good()]
    rejects: list[pl.DataFrame] = [empty_rejected()]
    line_no = 2
    for item in iter_line_blocks(buf, header_end + 1 if header_end >= 0 else len(buf), chunk_bytes, MAX_LINE_BYTES + 2):
        if isinstance(item, OverlongLine):
            rejects.append(_overlong_reject(item, line_no))
            line_no += 1
            continue
        good, rejected, n = _parse_block(item, line_no)
        goods.append(good)
        rejects.append(rejected)
        line_no += n
    return ParsedRatings(pl.concat(goods, rechunk=False), pl.concat(rejects))


def parse_ratings_file(
    path: str | Path, *, source_name: str | None = None, chunk_bytes: int = CHUNK_BYTES
) -> ParsedRatings:
    """Parse a ratings CSV strictly; line numbers count the header as line 1.

    Raises `IngestError` (naming the file) when the file cannot be read or is not a ratings CSV;
    every other defect rejects only its line. Memory is bounded by the output plus ~2 blocks.
    """
    name = source_name or Path(path).name
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return _parse_buffer(b"", name, chunk_bytes)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse_buffer(buf, name, chunk_bytes)
    except (OSError, ValueError) as exc:
        if isinstance(exc, IngestError):
            raise
        raise IngestError(f"{name}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


# -- rules that need context -----------------------------------------------------------------------
def _canonical_line() -> pl.Expr:
    """A good row written back as a ratings line (its raw text is not kept, to save memory)."""
    ts = pl.col("rated_at").dt.epoch("s").cast(pl.String)
    return pl.format("{},{},{},{}", "user_id", "movie_id", pl.col("rating").cast(pl.Float64).round(1), ts)


def _pair_key(df: pl.DataFrame) -> np.ndarray:
    """(user_id, movie_id) packed into one uint64 (both are positive int32)."""
    key = pl.col("user_id").cast(pl.UInt64) * (1 << 32) + pl.col("movie_id").cast(pl.UInt64)
    return df.select(key).to_series().to_numpy()


def _drop_duplicates(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows sorted by (user_id, movie_id, rated_at), duplicates of an earlier line removed.

    Sorting by the packed (user, movie) pair is one integer sort (a no-op for MovieLens files,
    which come sorted by user and movie); only pairs that occur more than once are looked at
    further. The sorted order also makes the primary key build cheap.
    """
    key = _pair_key(df)
    if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        df, key = df[order], key[order]
    repeat = key[1:] == key[:-1]
    if not repeat.any():
        return df, empty_rejected()
    grouped = np.zeros(len(key), dtype=bool)
    grouped[1:] |= repeat
    grouped[:-1] |= repeat
    pos = np.flatnonzero(grouped)
    sub = df[pos].with_columns(_pos=pl.Series(pos)).sort([*KEY, "line_number"])
    sub = sub.with_columns(_first=pl.col("line_number").first().over(KEY))
    perm = np.arange(len(key))
    perm[pos] = sub["_pos"].to_numpy()  # within each repeated pair, order by time then line
    is_dup = (sub["line_number"] != sub["_first"]).to_numpy()
    keep = np.ones(len(key), dtype=bool)
    keep[pos[is_dup]] = False
    dups = sub.filter(is_dup).select(
        "line_number", raw_line=_canonical_line(), reason=pl.format("duplicate of line {}", "_first")
    )
    return df[perm].filter(keep), dups


def validate_ratings(
    good: pl.DataFrame, known_movie_ids: pl.Series | None, *, expected_day: date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reject rows with an unknown movie id, dated outside `expected_day` (UTC), or repeating the
    (user, movie, timestamp) of an earlier line (the lowest line number is kept).

    Returns (kept rows sorted by (user_id, movie_id, rated_at), rejected rows in line order).
    """
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    if known_movie_ids is not None:
        known = known_movie_ids.cast(pl.Int32).unique().implode()
        checks.append((~pl.col("movie_id").is_in(known), pl.format("unknown movieId {}", "movie_id")))
    if expected_day is not None:
        when = pl.col("rated_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        msg = pl.format("timestamp {} outside file day {}", when, pl.lit(expected_day.isoformat()))
        checks.append((pl.col("rated_at").dt.date() != pl.lit(expected_day), msg))
    rejected = [empty_rejected()]
    if checks:
        bad = good.select(pl.any_horizontal([c for c, _ in checks])).to_series()
        if bad.any():
            reason = pl.when(checks[0][0]).then(checks[0][1])
            for cond, msg in checks[1:]:
                reason = reason.when(cond).then(msg)
            rejected.append(good.filter(bad).select("line_number", raw_line=_canonical_line(), reason=reason))
            good = good.filter(~bad)
    kept, dups = _drop_duplicates(good)
    return kept, pl.concat([*rejected, dups]).sort("line_number")


def split_rejects_by_day(rejected: pl.DataFrame, cutoff_day: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rejects belonging to the history, rejects of lines dated after `cutoff_day`).

    The date comes from the raw line's fourth field; a line without a readable timestamp cannot
    be dated and belongs to the history, so every rejected line is quarantined exactly once.
    """
    ts = pl.col("raw_line").str.split(",").list.get(3, null_on_oob=True).cast(pl.Int64, strict=False)
    day = pl.when(ts.is_between(0, MAX_TIMESTAMP)).then((ts * 1_000_000).cast(RATED_AT).dt.date())
    future = (day > pl.lit(cutoff_day)).fill_null(False)
    flagged = rejected.with_columns(_future=future)
    return flagged.filter(~pl.col("_future")).drop("_future"), flagged.filter(pl.col("_future")).drop("_future")
