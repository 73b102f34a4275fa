"""The PostgreSQL resource every asset uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg

from movierec_assets.db.connect import adbc_connect, connect
from movierec_assets.db.migrations import prepare_database
from movierec_assets.db.url import redact


class PostgresResource(dg.ConfigurableResource):
    """Connections to the movierec server.

    The URL comes only from the environment: `MOVIEREC_DATABASE_URL` when set, otherwise the
    embedded server under `$MOVIEREC_HOME` (started on first use). Migrations run before first use.
    """

    def url(self) -> str:
        return prepare_database()

    def display_url(self) -> str:
        return redact(self.url())

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        with connect(self.url(), autocommit=autocommit) as conn:
            yield conn

    @contextmanager
    def adbc(self, autocommit: bool = False) -> Iterator[Any]:
        with adbc_connect(self.url(), autocommit=autocommit) as conn:
            yield conn
