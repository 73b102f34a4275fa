"""`movierec dev`: the Dagster UI and daemon on this code location, over the movierec server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from movierec_assets.db.url import external_url, redact


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A MovieLens directory (default: $MOVIEREC_DATA_DIR, else the synthetic default).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for the UI.")
@click.option("--port", default=3000, show_default=True, type=int)
def dev(data_dir: Path | None, host: str, port: int) -> None:
    """Ensure the server, schema and DAGSTER_HOME, then run `dagster dev` (stops the embedded server on exit)."""
    from movierec_assets.cli.bootstrap import bootstrap
    from movierec_assets.db.embedded import EmbeddedPostgres

    embedded = external_url() is None
    env = bootstrap(data_dir)
    click.echo(f"PostgreSQL: {redact(env.url)}\nDAGSTER_HOME: {env.dagster_home}\nUI: http://{host}:{port}")
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "movierec_assets", "-h", host, "-p", str(port)]
    try:
        subprocess.run(cmd, env=os.environ.copy(), check=False)  # noqa: S603 - fixed argv
    except KeyboardInterrupt:
        pass
    finally:
        if embedded:
            EmbeddedPostgres().stop()
            click.echo("embedded PostgreSQL stopped")
