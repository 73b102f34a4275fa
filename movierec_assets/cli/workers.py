"""`movierec workers start|stop|status`: the Celery broker and N dagster-celery workers.

`start` prepares what `movierec dev` does (server, schema, dataset, DAGSTER_HOME), starts the
local Redis unless `MOVIEREC_BROKER_URL` names a broker, then N workers with the same environment.
Runs use them with `MOVIEREC_EXECUTOR=celery` (docs/scaling.md, "Run it on workers").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from movierec_assets.cli.bootstrap import bootstrap
from movierec_assets.settings import Settings
from movierec_assets.workers.broker import BrokerError, LocalRedis, broker_url, redact
from movierec_assets.workers.pool import WorkerPool


def _home() -> Path:
    return Settings.from_env().home


@click.group()
def workers() -> None:
    """Celery workers for MOVIEREC_EXECUTOR=celery (broker: MOVIEREC_BROKER_URL, else a local Redis)."""


@workers.command()
@click.option("-n", "--count", default=2, show_default=True, type=click.IntRange(min=1, max=64),
              help="Worker processes to start (each runs one step at a time).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A MovieLens directory (default: $MOVIEREC_DATA_DIR, else the synthetic default).")
def start(count: int, data_dir: Path | None) -> None:
    """Start the broker (if local) and COUNT workers; returns once every worker answers."""
    env = bootstrap(data_dir)
    try:
        url = broker_url(Settings.from_env(), start_local=True)
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"broker: {redact(url)}")
    try:
        started = WorkerPool(_home()).start(count, os.environ)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for w in started:
        click.echo(f"worker {w.name}: pid {w.pid}, log {w.log}")
    click.echo(f"{len(started)} worker(s) on dataset {env.data_dir.name}; run with MOVIEREC_EXECUTOR=celery")


@workers.command()
@click.option("--keep-broker", is_flag=True, help="Leave the local Redis running.")
def stop(keep_broker: bool) -> None:
    """Stop the workers by PID (a running step finishes first), then the local Redis."""
    click.echo(f"stopped {WorkerPool(_home()).stop()} worker(s)")
    if not keep_broker and not Settings.from_env().broker_url:
        click.echo("local Redis stopped" if LocalRedis(_home()).stop() else "local Redis not running")


@workers.command()
def status() -> None:
    """The broker and the workers: PIDs, and whether each answers a ping."""
    settings = Settings.from_env()
    broker: dict[str, object] = ({"external": True, "url": redact(settings.broker_url)} if settings.broker_url
                                 else {"external": False, **LocalRedis(settings.home).status()})
    try:
        pool = WorkerPool(settings.home).status()
    except BrokerError as exc:
        pool = {"workers": [], "error": str(exc)}
    click.echo(json.dumps({"broker": broker, **pool}))
