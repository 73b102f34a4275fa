"""What every long-running entry point does first: server, schema, dataset, DAGSTER_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from movierec_assets.db.migrations import prepare_database
from movierec_assets.instance import bootstrap_instance
from movierec_assets.movielens.split import SplitManifest, split_manifest
from movierec_assets.movielens.synth import ensure_default_dataset
from movierec_assets.settings import ENV_DATA_DIR, ENV_HOME, Settings


@dataclass(frozen=True)
class Environment:
    url: str
    data_dir: Path
    dagster_home: Path
    manifest: SplitManifest


def bootstrap(data_dir: Path | None = None) -> Environment:
    """Ensure the server and schema, the dataset, and the Dagster home; export the settings.

    Without `data_dir` or `MOVIEREC_DATA_DIR` the synthetic default is generated (the definitions
    already show its partitions before it exists). The split manifest is computed here once and
    cached by the dataset's content, so the code server and run workers need not rescan the data.
    """
    if data_dir is not None:
        os.environ[ENV_DATA_DIR] = str(data_dir.absolute())
    settings = Settings.from_env()
    os.environ[ENV_HOME] = str(settings.home)  # absolute, for child processes
    url = prepare_database()
    if settings.data_dir is None:
        ensure_default_dataset()
    os.environ[ENV_DATA_DIR] = str(settings.dataset)
    manifest = split_manifest(settings.dataset, cache_dir=settings.home / "manifests", write_cache=True)
    return Environment(url=url, data_dir=settings.dataset, dagster_home=_dagster_home(), manifest=manifest)


def _dagster_home() -> Path:
    """DAGSTER_HOME prepared and the instance's pools created (instance.bootstrap_instance)."""
    instance = bootstrap_instance()
    home = Path(os.environ["DAGSTER_HOME"])
    instance.dispose()
    return home
