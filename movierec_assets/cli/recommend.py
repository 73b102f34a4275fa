"""`movierec recommend`."""

from __future__ import annotations

import click


@click.command()
def recommend() -> None:
    """Not built yet."""
    raise click.ClickException("movierec recommend is not built yet")
