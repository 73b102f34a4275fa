"""Connections: psycopg for DDL and small queries, ADBC (COPY BINARY) for Arrow bulk paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg

from movierec_assets.config import ENV_DATABASE_URL
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.url import external_url, libpq_params, redact_text


class DatabaseUnavailable(RuntimeError):
    """The server did not accept a connection; the message names the server, never the password."""


def one_line(exc: BaseException) -> str:
    """A driver error as one redacted line (libpq's messages span lines: hint, detail)."""
    return " ".join(redact_text(str(exc)).split()) or type(exc).__name__


def server_of(url: str) -> str:
    """host:port/database of a URL, for messages (never the user or password)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or 'localhost'}:{port or 5432}{parts.path or ''}"


def database_url(start_embedded: bool = True) -> str:
    """The server everything uses: `MOVIEREC_DATABASE_URL` if set, else the embedded one."""
    url = external_url()
    if url:
        return url
    if not start_embedded:
        raise DatabaseUnavailable(f"{ENV_DATABASE_URL} is not set and the embedded server is not started")
    url = EmbeddedPostgres().ensure_running()
    os.environ[ENV_DATABASE_URL] = url  # child processes (dagster, workers) reuse this server
    return url


@contextmanager
def connect(url: str, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection with a bounded connect time and a clear error when the server is down."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **libpq_params(url))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {server_of(url)}: {one_line(exc)}") from None
    with conn:
        yield conn


@contextmanager
def adbc_connect(url: str, autocommit: bool = False) -> Iterator[Any]:
    """An ADBC DB-API connection (Arrow in and out through COPY BINARY)."""
    import adbc_driver_postgresql.dbapi as adbc  # its driver library (~0.3 s) loads on first bulk use only

    sep = "&" if "?" in url else "?"
    full = url + sep + "&".join(f"{k}={v}" for k, v in libpq_params(url).items())
    try:
        conn = adbc.connect(full, autocommit=autocommit)
    except Exception as exc:  # the driver raises its own OperationalError family
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {server_of(url)}: {one_line(exc)}") from None
    try:
        yield conn
    finally:
        conn.close()
