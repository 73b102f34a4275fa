"""Jobs of the movierec code location."""


from pathlib import Path
from typing import Any

import dagster as dg

from movierec_assets.ingest.replay import replay

DAILY_ASSET = "daily_partitioned_ratings"


def build_daily_ratings_job(partitions_def: dg.PartitionsDefinition) -> Any:
    return dg.define_asset_job(
        "daily_ratings_job",
        selection=dg.AssetSelection.assets(DAILY_ASSET),
        partitions_def=partitions_def,
        description="Load day partitions of the future ratings from the landing zone (launched by "
        "landing_zone_sensor).",
    )


ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingest") - dg.AssetSelection.assets(DAILY_ASSET),
    description="Load the movies and the history ratings (the unpartitioned ingest assets).",
)


# Every unpartitioned asset with its checks (the blocking champion gate among them): what
# `movierec demo` runs first, and what it re-runs subsets of when automation asks.
pipeline_job = dg.define_asset_job(
    "pipeline_job",
    selection=(dg.AssetSelection.all() - dg.AssetSelection.assets(DAILY_ASSET)) | dg.AssetSelection.all_asset_checks(),
    description="Movies and history, features, the two-tower model with its champion gate, and serving: "
    "every unpartitioned asset (the demo's main run; subsets re-run what automation requests).",
)


class ReplayConfig(dg.Config):
    days: int = 1


def build_replay_job(data_dir: Path, landing: Path) -> dg.JobDefinition:
    """The replay producer over the dataset in `data_dir`, writing into `landing`."""

    @dg.op(description="Write the next day(s) of the dataset's future ratings into the landing zone.")
    def replay_next_days(context: dg.OpExecutionContext, config: ReplayConfig) -> None:
        written = replay(data_dir, landing, days=config.days)
        if written:
            context.log.info(f"replayed {len(written)} day(s) {written[0]} .. {written[-1]} into {landing}")
        else:
            context.log.info(f"nothing to replay: every future day already has a file in {landing}")

    @dg.job(
        name="replay_job",
        description="The replay producer (stands in for upstream): writes the next future day's ratings file "
        "into the landing zone, where landing_zone_sensor picks it up.",
        tags={"movierec/kind": "replay"},
    )
    def replay_job() -> None:
        replay_next_days()

    return replay_job
