"""`movierec data download|synth`: get a MovieLens directory, real or synthetic."""

from __future__ import annotations

import time
from pathlib import Path

import click
from tqdm import tqdm

from movierec_assets.config import ENV_DATA_DIR, paths
from movierec_assets.movielens.download import DownloadError
from movierec_assets.movielens.download import download as fetch
from movierec_assets.movielens.synth import DEFAULT_RATINGS, DEFAULT_SEED, write_synthetic


@click.group()
def data() -> None:
    """Download a GroupLens MovieLens dataset or write a synthetic one."""


@data.command()
@click.argument("name", type=click.Choice(["ml-32m", "ml-25m", "ml-latest-small"]))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to unpack into (default: $MOVIEREC_HOME/datasets).",
)
@click.option("--force", is_flag=True, help="Download again even if the dataset is already there.")
def download(name: str, dest: Path | None, force: bool) -> None:
    """Download NAME from GroupLens over HTTPS, verify its size and MD5, and unpack it."""
    try:
        out = fetch(name, dest or paths().datasets, force=force)
    except (DownloadError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} is in {out}")
    click.echo(f"use it with: export {ENV_DATA_DIR}={out}")


@data.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--ratings", "n_ratings", type=click.IntRange(min=20), default=DEFAULT_RATINGS, show_default=True
)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
def synth(out: Path, n_ratings: int, seed: int) -> None:
    """Write a synthetic MovieLens-format dataset with N ratings into OUT."""
    started = time.perf_counter()
    with tqdm(total=n_ratings, unit=" ratings", unit_scale=True, desc="synth") as bar:
        plan = write_synthetic(out, n_ratings, seed, progress=bar.update)
    seconds = time.perf_counter() - started
    click.echo(
        f"wrote {plan.n_ratings:,} ratings by {plan.n_users:,} users on {plan.n_movies:,} movies "
        f"to {out} in {seconds:.1f} s"
    )
