"""`movierec dev`."""

from __future__ import annotations

import click


@click.command()
def dev() -> None:
    """Not built yet."""
    raise click.ClickException("movierec dev is not built yet")
