"""The quarantine: rejected rating lines in `movielens.rejected_ratings`, with file, line and reason.

Both functions run inside the caller's transaction (an ADBC connection with autocommit off), so
a load and its quarantine rows commit or roll back together. A reload clears its own scope first
(the history, or one partition day), so quarantine rows are replaced, never duplicated.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl

from movierec_assets.db import bulk
from movierec_assets.ingest.rules import MAX_RAW_CHARS

SCHEMA, TABLE = "movielens", "rejected_ratings"


def _text(col: str | pl.Expr, limit: int = MAX_RAW_CHARS) -> pl.Expr:
    """Text PostgreSQL accepts and people can read: no NUL characters, bounded length."""
    expr = pl.col(col) if isinstance(col, str) else col
    expr = expr.cast(pl.String).str.replace_all("\x00", "\ufffd", literal=True)
    return pl.when(expr.str.len_chars() > limit).then(expr.str.slice(0, limit) + "...").otherwise(expr)


def quarantine_frame(rejected: pl.DataFrame, source_file: str, partition_day: date | None) -> pl.DataFrame:
    """Rejected rows (line_number, raw_line, reason) as rows of the quarantine table."""
    return rejected.select(
        source_file=_text(pl.lit(source_file, dtype=pl.String), 500),
        line_number=pl.col("line_number").cast(pl.Int64),
        raw_line=_text("raw_line"),
        reason=_text("reason"),
        partition_day=pl.lit(partition_day, dtype=pl.Date),
    )


def write_rejects(conn: Any, rejected: pl.DataFrame, source_file: str, partition_day: date | None) -> int:
    """COPY the rejected rows into the quarantine (caller's transaction); returns rows written.

    `partition_day` is None for the history, else the day partition the file delivered.
    """
    if rejected.height == 0:
        return 0
    return bulk.ingest(conn, SCHEMA, TABLE, quarantine_frame(rejected, source_file, partition_day))


def clear_rejects(conn: Any, partition_day: date | None) -> None:
    """Delete the quarantine rows of one scope: the history (None) or one partition day."""
    if partition_day is None:
        bulk.execute(conn, "DELETE FROM movielens.rejected_ratings WHERE partition_day IS NULL")
    else:
        bulk.execute(conn, "DELETE FROM movielens.rejected_ratings WHERE partition_day = $1", (partition_day,))
