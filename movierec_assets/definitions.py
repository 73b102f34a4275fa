"""The one place that wires assets, checks, jobs, schedules, sensors and resources together.

The definitions are a pure function of one `Settings` (`build_definitions`), built lazily when
Dagster loads the code location (`@dg.definitions`). The daily partitions come from the dataset's
split manifest, a function of the dataset's content: no file an asset writes is read here, and
loading writes no file and starts no server.

Keep TensorFlow and ONNX Runtime out of this import path: assets import them inside their bodies,
so the UI and the sensors load fast.
"""

from __future__ import annotations

import functools

import dagster as dg

from movierec_assets.assets import features, ingest, ml, serving
from movierec_assets.deploy import executor_for
from movierec_assets.ingest.daily_asset import build_daily_partitioned_ratings
from movierec_assets.jobs import build_daily_ratings_job, build_replay_job, ingest_job, pipeline_job
from movierec_assets.movielens.split import expected_manifest
from movierec_assets.partitions import DayRange, daily_partitions_for
from movierec_assets.resources import PostgresResource
from movierec_assets.schedules import build_replay_schedule
from movierec_assets.sensors import build_sensors
from movierec_assets.settings import ENV_DATABASE_URL, Settings

_ASSET_MODULES = [ingest, features, ml, serving]


def day_range(settings: Settings) -> DayRange:
    """The future days of the configured dataset (of the synthetic default before it exists)."""
    manifest = expected_manifest(settings.dataset, settings.default_dataset, settings.home / "manifests")
    return DayRange.of(manifest)


def postgres_resource(settings: Settings) -> PostgresResource:
    url = dg.EnvVar(ENV_DATABASE_URL) if settings.database_url else ""
    return PostgresResource(home=str(settings.home), database_url=url)  # type: ignore[arg-type]


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition of the code location, for `settings`."""
    days = day_range(settings)
    partitions = daily_partitions_for(days)
    daily_job = build_daily_ratings_job(partitions)
    replay_job = build_replay_job(settings.dataset, settings.landing_dir)
    return dg.Definitions(
        assets=[*dg.load_assets_from_modules(_ASSET_MODULES),
                build_daily_partitioned_ratings(partitions, days, settings.landing_dir)],
        asset_checks=dg.load_asset_checks_from_modules(_ASSET_MODULES),
        jobs=[daily_job, ingest_job, pipeline_job, replay_job],
        schedules=[build_replay_schedule(settings.replay_cron, replay_job)],
        sensors=build_sensors(days, daily_job, settings.landing_dir),
        resources={"postgres": postgres_resource(settings)},
        executor=executor_for(settings.executor),
    )


@functools.lru_cache(maxsize=4)
def _definitions_for(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


def current_definitions() -> dg.Definitions:
    """The definitions for the environment as it is now (built once per distinct `Settings`)."""
    return _definitions_for(Settings.from_env())


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev -m movierec_assets` and `dagster definitions validate` load."""
    return current_definitions()
