"""`movierec replay`."""

from __future__ import annotations

import click


@click.command()
def replay() -> None:
    """Not built yet."""
    raise click.ClickException("movierec replay is not built yet")
