"""A whole movierec stack for the Celery tests and benchmark: its own home, embedded PostgreSQL (one
database per run mode), a dataset with future days in the landing zone, a real Redis and real
dagster-celery workers. Every process it starts is stopped by PID in `close()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from movierec_assets.config import Paths
from movierec_assets.db.connect import connect
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import apply_migrations
from movierec_assets.ingest.replay import replay
from movierec_assets.instance import prepare_dagster_home
from movierec_assets.movielens.split import split_manifest
from movierec_assets.workers.broker import LocalRedis
from movierec_assets.workers.pool import WorkerPool
from movierec_assets.workers.runs import RunOutcome, run_job

ENV_KEYS = ("MOVIEREC_HOME", "MOVIEREC_DATA_DIR", "MOVIEREC_LANDING_DIR", "MOVIEREC_DATABASE_URL", "DAGSTER_HOME",
            "MOVIEREC_EXECUTOR", "MOVIEREC_BROKER_URL")
PIPELINE_JOB = "pipeline_job"
DAILY_JOB = "daily_ratings_job"
# Quiet run logs (the step events are what the tests read); one epoch keeps the test short.
LOGGERS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def training_config(epochs: int | None) -> dict[str, Any]:
    """`trained_model`'s run config: its own defaults, except `epochs` when the field exists."""
    from movierec_assets.ml.config import flat_defaults

    if epochs is None or "epochs" not in flat_defaults():
        return {}
    return {"ops": {"trained_model": {"config": {"epochs": epochs}}}}


@dataclass
class Stack:
    home: Path
    dataset: Path
    days: list[str]
    urls: dict[str, str] = field(default_factory=dict)  # run mode -> database URL
    server: EmbeddedPostgres | None = None
    broker: LocalRedis | None = None
    pool: WorkerPool | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def use(self, mode: str) -> dg.DagsterInstance:
        """Point the environment at `mode`'s database ('inprocess' or 'celery'); its instance."""
        os.environ["MOVIEREC_DATABASE_URL"] = self.urls[mode]
        os.environ["MOVIEREC_EXECUTOR"] = "celery" if mode == "celery" else "default"
        return dg.DagsterInstance.from_config(str(self.home / "dagster"))

    def start_workers(self, n: int) -> WorkerPool:
        self.use("celery")
        self.broker = self.broker or LocalRedis(self.home)
        self.broker.ensure_running()
        self.pool = WorkerPool(self.home)
        self.pool.start(n, os.environ)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop(grace_s=30)
        if self.broker is not None:
            self.broker.stop()
        if self.server is not None:
            self.server.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def open_stack(home: Path, dataset: Path, n_days: int, modes: tuple[str, ...] = ("inprocess", "celery")) -> Stack:
    """Server, one migrated database per mode, DAGSTER_HOME, and `n_days` future days landed."""
    stack = Stack(home=home, dataset=dataset, days=[], _saved_env={k: os.environ.get(k) for k in ENV_KEYS})
    os.environ.pop("MOVIEREC_BROKER_URL", None)
    os.environ["MOVIEREC_HOME"] = str(home)
    os.environ["MOVIEREC_DATA_DIR"] = str(dataset)
    os.environ["MOVIEREC_LANDING_DIR"] = str(home / "landing")
    stack.server = EmbeddedPostgres(Paths(home))
    base = stack.server.ensure_running()
    for mode in modes:
        stack.urls[mode] = _database(base, f"movierec_{mode}")
        apply_migrations(stack.urls[mode])
    os.environ["MOVIEREC_DATABASE_URL"] = stack.urls[modes[0]]
    prepare_dagster_home(home / "dagster")
    manifest = split_manifest(dataset, cache_dir=home / "manifests", write_cache=True)
    stack.days = [d.isoformat() for d in replay(dataset, home / "landing", days=n_days, manifest=manifest)]
    return stack


@contextmanager
def stack_context(home: Path, dataset: Path, n_days: int) -> Iterator[Stack]:
    stack = open_stack(home, dataset, n_days)
    try:
        yield stack
    finally:
        stack.close()


def _database(base_url: str, name: str) -> str:
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def run_everything(instance: dg.DagsterInstance, days: list[str], distributed: bool,
                   epochs: int | None = 1) -> list[RunOutcome]:
    """Every unpartitioned asset (pipeline_job, with its checks), then each of `days`."""
    config = {**LOGGERS, **training_config(epochs)}
    runs = [run_job(instance, PIPELINE_JOB, distributed=distributed, run_config=config)]
    for day in days:
        runs.append(run_job(instance, DAILY_JOB, distributed=distributed, partition=day, run_config=LOGGERS))
    return runs


def project_tables(url: str) -> list[str]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN ('movielens', 'features', 'ml') "
            "ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def row_counts(url: str) -> dict[str, int]:
    out = {}
    with connect(url) as conn:
        for table in project_tables(url):
            schema, name = table.split(".")
            out[table] = int(conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                     sql.Identifier(name))).fetchone()[0])
    return out


def table_digest(url: str, table: str, exclude: tuple[str, ...] = ()) -> str:
    """md5 of every row's text (all columns but `exclude`), in sorted order: equal means bit-equal
    (float8 text output round-trips exactly)."""
    schema, name = table.split(".")
    with connect(url) as conn:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position", (schema, name)).fetchall() if r[0] not in exclude]
        row = sql.SQL("concat_ws('|', {})").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols))
        query = sql.SQL("SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) FROM "
                                "(SELECT {} AS r FROM {}.{}) AS t").format(
            row, sql.Identifier(schema), sql.Identifier(name))
        return str(conn.execute(query).fetchone()[0])
