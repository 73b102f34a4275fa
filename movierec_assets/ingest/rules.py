"""The line rules of a ratings file: what a good `userId,movieId,rating,timestamp` line is, and the
short, specific reason a bad one is rejected.

`parse_lines` is the authority: it handles every line it is given, whatever its bytes. The fast
path in `validate.py` only accepts lines these rules would accept, and hands it everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from movierec_assets.ingest.lines import line_array, lines_with_bytes

MAX_LINE_BYTES = 4096  # a rating line is ~30 bytes; anything this long is not one
MAX_RAW_CHARS = 1000  # raw lines are kept for diagnosis, not in full when huge
INT32_MAX = 2**31 - 1
MAX_TIMESTAMP = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
RATED_AT = pl.Datetime("us", "UTC")

GOOD_SCHEMA = {
    "user_id": pl.Int32,
    "movie_id": pl.Int32,
    "rating": pl.Float32,
    "rated_at": RATED_AT,
    "line_number": pl.Int64,
}
REJECTED_SCHEMA = {"line_number": pl.Int64, "raw_line": pl.String, "reason": pl.String}


def empty_good() -> pl.DataFrame:
    return pl.DataFrame(schema=GOOD_SCHEMA)


def empty_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECTED_SCHEMA)


def id_ok(c: str) -> pl.Expr:
    return pl.col(c).is_between(1, INT32_MAX)


def rating_ok(c: str = "r") -> pl.Expr:
    r2 = pl.col(c) * 2
    return pl.col(c).is_between(0.5, 5.0) & (r2 == r2.round())


def timestamp_ok(c: str = "t") -> pl.Expr:
    return pl.col(c).is_between(0, MAX_TIMESTAMP)


def values_ok() -> pl.Expr:
    """u, m, r, t parsed and in range; a null (unparseable field) fails, so no row is ever lost."""
    return (id_ok("u") & id_ok("m") & rating_ok() & timestamp_ok()).fill_null(False)


def good_rows(df: pl.DataFrame) -> pl.DataFrame:
    """u, m, r, t (+ line_number) as the ratings contract."""
    return df.select(
        user_id=pl.col("u").cast(pl.Int32),
        movie_id=pl.col("m").cast(pl.Int32),
        rating=pl.col("r").cast(pl.Float32),
        rated_at=(pl.col("t") * 1_000_000).cast(RATED_AT),
        line_number=pl.col("line_number"),
    )


# -- the few lines with NUL or non-ASCII bytes -----------------------------------------------------
def _byte_problems(data: bytes, breaks: np.ndarray) -> tuple[np.ndarray, list[str | None], list[str]]:
    """Lines with NUL or non-ASCII bytes: their indices, a reason (None if the line is valid UTF-8,
    so it goes through the normal checks) and their lossily decoded text.

    Only these lines are handled one by one; pure-ASCII lines never are.
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    idx = lines_with_bytes(breaks, (raw >= 0x80) | (raw == 0))
    starts = np.concatenate(([0], breaks[:-1] + 1))
    reasons: list[str | None] = []
    texts: list[str] = []
    for i in idx.tolist():
        line = data[starts[i] : breaks[i]].removesuffix(b"\r")
        texts.append(line.decode("utf-8", "replace").replace("\x00", "\ufffd"))
        if (nul := line.find(b"\x00")) >= 0:
            reasons.append(f"NUL byte at byte {nul + 1}")
            continue
        try:
            line.decode("utf-8")
            reasons.append(None)
        except UnicodeDecodeError as exc:
            reasons.append(f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at byte {exc.start + 1})")
    return idx, reasons, texts


def _text_frame(data: bytes, line_numbers: np.ndarray) -> pl.DataFrame:
    """(line_number, text, byte_reason): each line as text without its line break."""
    arr, breaks = line_array(data)
    idx, reasons, texts = _byte_problems(data, breaks)
    if len(idx):  # make the bytes castable to text; the real content is patched in below
        raw = np.frombuffer(data, dtype=np.uint8).copy()
        raw[(raw >= 0x80) | (raw == 0)] = ord("?")
        arr, breaks = line_array(raw.tobytes())
    text = pl.Series("text", arr).cast(pl.String).str.strip_suffix("\n").str.strip_suffix("\r")
    byte_reason = pl.Series("byte_reason", [None] * len(text), dtype=pl.String)
    if len(idx):
        pos = pl.Series(idx.astype(np.int64))
        text = text.scatter(pos, pl.Series(texts, dtype=pl.String))
        byte_reason = byte_reason.scatter(pos, pl.Series(reasons, dtype=pl.String))
    return pl.DataFrame([pl.Series("line_number", line_numbers, dtype=pl.Int64), text, byte_reason])


# -- fields, checks, reasons -----------------------------------------------------------------------
def _fields(df: pl.DataFrame) -> pl.DataFrame:
    """Split and cast the four fields; casts that fail give null (reasons come later)."""
    parts = pl.col("text").str.split_exact(",", 3)
    return df.with_columns(
        nbytes=pl.col("text").str.len_bytes(),
        ncommas=pl.col("text").str.count_matches(",", literal=True),
        u_s=parts.struct.field("field_0"),
        m_s=parts.struct.field("field_1"),
        r_s=parts.struct.field("field_2"),
        t_s=parts.struct.field("field_3"),
    ).with_columns(
        u=pl.col("u_s").cast(pl.Int64, strict=False),
        m=pl.col("m_s").cast(pl.Int64, strict=False),
        r=pl.col("r_s").cast(pl.Float64, strict=False),
        t=pl.col("t_s").cast(pl.Int64, strict=False),
    )


_LINE_OK = (
    pl.col("byte_reason").is_null() & (pl.col("nbytes") <= MAX_LINE_BYTES) & (pl.col("ncommas") == 3) & values_ok()
)


def _q(c: str) -> pl.Expr:
    """A field's text for a reason, shortened."""
    return pl.col(c).str.slice(0, 40)


def _field_reasons(chain: pl.Expr) -> pl.Expr:
    for col, name in (("u", "userId"), ("m", "movieId")):
        chain = (
            chain.when(pl.col(col).is_null())
            .then(pl.format(f"unparseable {name} '{{}}'", _q(f"{col}_s")))
            .when(~id_ok(col))
            .then(pl.format(f"{name} {{}} out of range 1..{INT32_MAX}", _q(f"{col}_s")))
        )
    return (
        chain.when(pl.col("r").is_null())
        .then(pl.format("unparseable rating '{}'", _q("r_s")))
        .when(~pl.col("r").is_finite())
        .then(pl.format("rating {} is not a finite number", _q("r_s")))
        .when(~pl.col("r").is_between(0.5, 5.0))
        .then(pl.format("rating {} is outside 0.5..5.0", _q("r_s")))
        .when(~rating_ok())
        .then(pl.format("rating {} is not a half step in 0.5..5.0", _q("r_s")))
        .when(pl.col("t").is_null())
        .then(pl.format("unparseable timestamp '{}'", _q("t_s")))
        .when(pl.col("t") < 0)
        .then(pl.format("timestamp {} is negative", _q("t_s")))
        .when(pl.col("t") > MAX_TIMESTAMP)
        .then(pl.format("timestamp {} is after 2100-01-01", _q("t_s")))
    )


def _reason() -> pl.Expr:
    """The first failed check of a line, as a short specific sentence."""
    n_fields = (pl.col("ncommas") + 1).cast(pl.String)
    chain = (
        pl.when(pl.col("nbytes") > MAX_LINE_BYTES)
        .then(pl.format("line too long ({} bytes, limit {})", "nbytes", pl.lit(MAX_LINE_BYTES)))
        .when(pl.col("byte_reason").is_not_null())
        .then(pl.col("byte_reason"))
        .when(pl.col("nbytes") == 0)
        .then(pl.lit("empty line"))
        .when(pl.col("ncommas") != 3)
        .then(pl.lit("expected 4 fields, got ") + n_fields)
    )
    return _field_reasons(chain).otherwise(pl.lit("invalid line"))


def _raw_line() -> pl.Expr:
    text = pl.col("text")
    return pl.when(text.str.len_chars() > MAX_RAW_CHARS).then(text.str.slice(0, MAX_RAW_CHARS) + "...").otherwise(text)


def parse_lines(data: bytes, line_numbers: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply the rules to complete lines (each ending in b"\\n"): (good rows, rejected rows)."""
    df = _fields(_text_frame(data, line_numbers)).with_columns(ok=_LINE_OK)
    good = good_rows(df.filter(pl.col("ok")))
    rejected = df.filter(~pl.col("ok")).select("line_number", raw_line=_raw_line(), reason=_reason())
    if good.height + rejected.height != df.height:  # every line is accounted for, exactly once
        raise RuntimeError(f"ratings parser lost lines near line {int(line_numbers[0])}")
    return good, rejected
