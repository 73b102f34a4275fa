"""Arrow-native bulk paths: COPY BINARY in (ADBC `adbc_ingest`) and out (ADBC fetch_arrow_table).

Rows never pass through Python one at a time.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl
import pyarrow as pa

from movierec_assets.db.connect import adbc_connect

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_ident(name: str) -> str:
    """A safely quoted SQL identifier; rejects anything that is not a plain name."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def to_arrow(data: pa.Table | pl.DataFrame) -> pa.Table:
    return data.to_arrow() if isinstance(data, pl.DataFrame) else data


def fetch_arrow(conn: Any, query: str, params: Sequence[Any] | None = None) -> pa.Table:
    """Run a query on an open ADBC connection and return the result as Arrow."""
    with conn.cursor() as cur:
        cur.execute(query, params) if params else cur.execute(query)
        return cur.fetch_arrow_table()


def read_polars(url: str, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """A query's result as a Polars frame, through COPY BINARY. Parameters are bound, never formatted."""
    with adbc_connect(url, autocommit=True) as conn:
        return pl.from_arrow(fetch_arrow(conn, query, params))  # type: ignore[return-value]


def ingest(conn: Any, schema: str, table: str, data: pa.Table | pl.DataFrame, mode: str = "append") -> int:
    """COPY Arrow data into `schema.table` inside the caller's transaction; return rows written.

    `mode` is ADBC's: "append" (table exists), "create" (new table) or "create_append".
    """
    quote_ident(schema), quote_ident(table)
    arrow = to_arrow(data)
    with conn.cursor() as cur:
        cur.adbc_ingest(table, arrow, mode=mode, db_schema_name=schema)
    return arrow.num_rows


def execute(conn: Any, sql: str, params: Sequence[Any] | None = None) -> None:
    """Run one statement on an ADBC connection (DDL, INSERT ... SELECT); parameters are bound."""
    with conn.cursor() as cur:
        cur.execute(sql, params) if params else cur.execute(sql)


@contextmanager
def transaction(url: str) -> Iterator[Any]:
    """An ADBC connection running one transaction: committed when the block ends, rolled back
    (nothing written) if it raises."""
    with adbc_connect(url, autocommit=False) as conn:
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def replace_table(conn: Any, schema: str, table: str, data: pa.Table | pl.DataFrame,
                  primary_key: Sequence[str], *, like_existing: bool = False) -> int:
    """Inside the caller's transaction: the atomic table swap. COPY `data` into a new table (typed by
    the Arrow data, or `LIKE` the existing table with its defaults and CHECKs), drop the old one,
    add the primary key and rename the new table in. Readers see the old table or the new one;
    under wal_level=minimal the COPY into a table created in the transaction writes no WAL."""
    build = f"{table}__build_{secrets.token_hex(4)}"
    target, staged = qualified(schema, table), qualified(schema, build)
    if like_existing:
        execute(conn, f"CREATE TABLE {staged} (LIKE {target} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        rows = ingest(conn, schema, build, data)
    else:
        rows = ingest(conn, schema, build, data, mode="create")
    execute(conn, f"DROP TABLE IF EXISTS {target}")
    key = ", ".join(quote_ident(c) for c in primary_key)
    execute(conn, f"ALTER TABLE {staged} ADD CONSTRAINT {quote_ident(table + '_pkey')} PRIMARY KEY ({key})")
    execute(conn, f"ALTER TABLE {staged} RENAME TO {quote_ident(table)}")
    return rows
