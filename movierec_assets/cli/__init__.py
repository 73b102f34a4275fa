"""The `movierec` command line. Each command group lives in its own module."""

from __future__ import annotations

import click

from movierec_assets.cli import data, db, demo, dev, recommend, replay, serve, workers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """movierec: MovieLens ratings to two-tower recommendations, orchestrated by Dagster."""


main.add_command(db.db)
main.add_command(data.data)
main.add_command(dev.dev)
main.add_command(demo.demo)
main.add_command(replay.replay)
main.add_command(recommend.recommend)
main.add_command(serve.serve)
main.add_command(workers.workers)

from movierec_assets.cli.evaluate import evaluate as _evaluate  # noqa: E402

main.add_command(_evaluate)
