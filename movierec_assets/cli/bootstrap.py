"""What every long-running entry point does first: server, schema, dataset split, DAGSTER_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from movierec_assets.config import ENV_DATA_DIR, ENV_HOME, movierec_home


@dataclass(frozen=True)
class Environment:
    url: str
    data_dir: Path
    dagster_home: Path


def bootstrap(data_dir: Path | None = None) -> Environment:
    """Ensure the server and schema, the dataset and its split manifest, and the Dagster home.

    Before any dataset is prepared the synthetic default is generated, so the UI never shows an
    empty or broken partition set.
    """
    from movierec_assets.db.migrations import prepare_database
    from movierec_assets.instance import prepare_dagster_home
    from movierec_assets.movielens.split import prepare_dataset, store_manifest
    from movierec_assets.movielens.synth import ensure_default_dataset

    os.environ[ENV_HOME] = str(movierec_home())  # absolute, for child processes
    url = prepare_database()
    if data_dir is None:
        env_dir = os.environ.get(ENV_DATA_DIR)
        data_dir = Path(env_dir) if env_dir else ensure_default_dataset()
    data_dir = data_dir.absolute()
    os.environ[ENV_DATA_DIR] = str(data_dir)
    manifest = prepare_dataset(data_dir)
    store_manifest(url, manifest)
    return Environment(url=url, data_dir=data_dir, dagster_home=prepare_dagster_home())
