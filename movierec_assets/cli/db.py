"""`movierec db start|stop|status|url`."""

from __future__ import annotations

import json

import click

from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import prepare_database
from movierec_assets.db.url import external_url, redact


@click.group()
def db() -> None:
    """The PostgreSQL server (embedded unless MOVIEREC_DATABASE_URL is set)."""


@db.command()
def start() -> None:
    """Start the embedded server (or reuse the running one) and apply migrations."""
    click.echo(f"PostgreSQL ready at {redact(prepare_database())}")


@db.command()
def stop() -> None:
    """Stop the embedded server cleanly."""
    if external_url():
        raise click.ClickException("MOVIEREC_DATABASE_URL is set: the external server is not ours to stop")
    click.echo("stopped" if EmbeddedPostgres().stop() else "not running")


@db.command()
def status() -> None:
    """Show whether the server is running, and where."""
    url = external_url()
    if url:
        click.echo(json.dumps({"external": True, "url": redact(url)}))
        return
    click.echo(json.dumps(EmbeddedPostgres().status()))


@db.command()
@click.option("--show-password", is_flag=True, help="Print the password instead of '***'.")
def url(show_password: bool) -> None:
    """Print the connection URL, starting the embedded server if needed."""
    full = prepare_database()
    click.echo(full if show_password else redact(full))
