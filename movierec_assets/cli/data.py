"""`movierec data`."""

from __future__ import annotations

import click


@click.command()
def data() -> None:
    """Not built yet."""
    raise click.ClickException("movierec data is not built yet")
