"""Numbered SQL migrations from `sql/`, applied once each and recorded in `schema_migrations`."""

from __future__ import annotations

import re
from pathlib import Path

from movierec_assets.db.connect import connect, database_url

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# One lock id for the whole project, so concurrent entry points migrate one at a time.
_MIGRATION_LOCK = 7_301_415_926


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    files = sorted(p for p in sql_dir.glob("*.sql") if _NAME.match(p.name))
    numbers = [p.name[:3] for p in files]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"duplicate migration numbers in {sql_dir}: {numbers}")
    return files


def apply_migrations(url: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return the names applied."""
    applied: list[str] = []
    with connect(url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {r[0] for r in conn.execute("SELECT version FROM public.schema_migrations")}
            for path in migration_files(sql_dir):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO public.schema_migrations (version) VALUES (%s)", (path.name,))
                applied.append(path.name)
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            conn.commit()
    return applied


def prepare_database(start_embedded: bool = True) -> str:
    """Every entry point's first step: resolve the server, migrate it, return its URL."""
    url = database_url(start_embedded=start_embedded)
    apply_migrations(url)
    return url
