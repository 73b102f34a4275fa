"""The PostgreSQL resource every asset uses."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from movierec_assets.config import Paths
from movierec_assets.db.connect import DatabaseUnavailable, database_url
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import apply_migrations


class PostgresResource(dg.ConfigurableResource):
    """The movierec server, resolved and migrated once per run (`setup_for_execution`).

    `database_url` is the external server (built from `dg.EnvVar("MOVIEREC_DATABASE_URL")`, so the
    password never lands in the run config); empty means the embedded server under `home`, started
    when a run first needs it. Both empty: `$MOVIEREC_HOME`/`$MOVIEREC_DATABASE_URL` at run time.
    """

    home: str = Field(default="", description="$MOVIEREC_HOME of the embedded server; empty: from the environment")
    database_url: str = Field(default="", description="an external PostgreSQL URL; empty: the embedded server")
    _url: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A server that is down now is not fatal here: the first `url()` inside an asset body raises
        # again, where `retry_if_database_drops` turns it into a retry of the step.
        try:
            self._url = self._prepare()
        except DatabaseUnavailable as exc:
            if context.log is not None:
                context.log.warning(f"PostgreSQL not reachable at run start, retrying in the step: {exc}")

    def url(self) -> str:
        """The migrated server's URL (resolved once per run)."""
        if self._url is None:
            self._url = self._prepare()
        return self._url

    def _prepare(self) -> str:
        if self.database_url:
            url = self.database_url
        elif self.home:
            url = EmbeddedPostgres(Paths(Path(self.home))).ensure_running()
        else:
            url = database_url()
        apply_migrations(url)
        return url
