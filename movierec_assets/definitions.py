"""The one place that wires assets, checks, jobs, schedules, sensors and resources together.

Keep TensorFlow out of this import path: assets import it inside their bodies, so the UI and the
sensors load fast.
"""

from __future__ import annotations

import dagster as dg

from movierec_assets.assets import features, ingest, ml, serving
from movierec_assets.deploy import executor_from_env
from movierec_assets.jobs import all_jobs
from movierec_assets.resources import PostgresResource
from movierec_assets.schedules import all_schedules
from movierec_assets.sensors import all_sensors

_ASSET_MODULES = [ingest, features, ml, serving]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(_ASSET_MODULES),
    jobs=all_jobs(),
    schedules=all_schedules(),
    sensors=all_sensors(),
    resources={"postgres": PostgresResource()},
    executor=executor_from_env(),
)
