"""`movierec dev`: the Dagster UI and daemon on this code location, over the movierec server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from movierec_assets.cli.bootstrap import bootstrap
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.url import external_url, redact


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A MovieLens directory (default: $MOVIEREC_DATA_DIR, else the synthetic default).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for the UI.")
@click.option("--port", default=3000, show_default=True, type=int)
def dev(data_dir: Path | None, host: str, port: int) -> None:
    """Ensure the server, schema and DAGSTER_HOME, then run `dagster dev` (stops the embedded server on exit)."""
    embedded = external_url() is None
    env = bootstrap(data_dir)
    click.echo(f"PostgreSQL: {redact(env.url)}\nDAGSTER_HOME: {env.dagster_home}\nUI: http://{host}:{port}")
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "movierec_assets", "-h", host, "-p", str(port)]
    try:
        _run_forwarding_signals(cmd)
    finally:
        if embedded:
            EmbeddedPostgres().stop()
            click.echo("embedded PostgreSQL stopped")


def _run_forwarding_signals(cmd: list[str], grace_s: float = 60.0) -> int:
    """Run `dagster dev`, passing SIGINT/SIGTERM on to it (a bare kill of this process would
    otherwise orphan it), and wait for it to shut down its webserver and daemon."""
    child = subprocess.Popen(cmd, env=os.environ.copy())  # noqa: S603 - fixed argv
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if child.poll() is None:
            child.send_signal(signal.SIGINT)  # dagster dev's clean-shutdown signal

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return child.wait(timeout=0.5 if not received else grace_s)
            except subprocess.TimeoutExpired:
                if received:
                    child.kill()
                    return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
