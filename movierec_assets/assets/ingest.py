"""Assets of the ingest group."""


# ==================================================================================================
# Daily partitions (issue 3): the future ratings, one partition per UTC day from the landing zone.
# Built in movierec_assets/ingest/daily_asset.py; partitions from the active split manifest.
# ==================================================================================================
from movierec_assets.ingest.daily_asset import build_daily_partitioned_ratings  # noqa: E402
from movierec_assets.partitions import ACTIVE_DAYS, daily_partitions  # noqa: E402

daily_partitioned_ratings = build_daily_partitioned_ratings(daily_partitions, ACTIVE_DAYS)
