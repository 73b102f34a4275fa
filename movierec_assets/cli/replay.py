"""`movierec replay`: the replay producer, writing the next future days into the landing zone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from tqdm import tqdm

from movierec_assets.cli.bootstrap import bootstrap
from movierec_assets.ingest.landing import landing_dir
from movierec_assets.ingest.replay import pending_days
from movierec_assets.ingest.replay import replay as replay_days


@click.command()
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="How many of the next future days to write (default 1 when --until is not given).")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Write every remaining future day up to this UTC day (YYYY-MM-DD), inclusive.")
@click.option("--landing", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Landing directory (default: $MOVIEREC_LANDING_DIR, else $MOVIEREC_HOME/landing/ratings).")
def replay(days: int | None, until: datetime | None, landing: Path | None) -> None:
    """Write the next DAYS future days of the configured dataset as YYYY-MM-DD.csv files.

    Resumable: days that already have a file are skipped, never written twice. Each file appears
    atomically, so the landing sensor never sees a half-written day.
    """
    manifest = bootstrap().manifest
    target = (landing or landing_dir()).absolute()
    until_day = until.date() if until else None
    if days is None and until_day is None:
        days = 1
    todo = pending_days(manifest, target, days, until_day)
    if not todo:
        click.echo(f"nothing to replay into {target}: no pending future day in the requested span")
        return
    with tqdm(total=len(todo), unit="day", desc="replay") as bar:
        written = replay_days(None, target, days, until_day, manifest=manifest, progress=bar.update)
    span = f"{written[0]} .. {written[-1]}" if written else "none"
    click.echo(f"wrote {len(written)} day file(s) ({span}) into {target}; "
               f"future days of {manifest.dataset_id}: {manifest.cutoff_day} < day <= {manifest.last_day}")
