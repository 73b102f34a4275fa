"""Paths under `$MOVIEREC_HOME`, from the validated `Settings` (never from code or files in the repo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from movierec_assets.settings import (
    ENV_DATA_DIR,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_LANDING_DIR,
    ENV_PG_PORT,
    ENV_PG_USER,
    Settings,
    resolve_home,
    resolve_landing,
)

__all__ = ["ENV_DATABASE_URL", "ENV_DATA_DIR", "ENV_HOME", "ENV_LANDING_DIR", "ENV_PG_PORT", "ENV_PG_USER",
           "Paths", "configured_data_dir", "movierec_home", "paths"]


def movierec_home() -> Path:
    """`$MOVIEREC_HOME`, defaulting to `.movierec/` in the working directory."""
    return resolve_home()


@dataclass(frozen=True)
class Paths:
    home: Path
    landing: Path | None = None  # None: `$MOVIEREC_HOME/landing/ratings`

    @classmethod
    def of(cls, settings: Settings) -> Paths:
        return cls(settings.home, settings.landing_dir)

    @property
    def pg(self) -> Path:
        return self.home / "pg"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def datasets(self) -> Path:
        return self.home / "datasets"

    @property
    def landing_ratings(self) -> Path:
        return self.landing or self.home / "landing" / "ratings"

    @property
    def default_dataset(self) -> Path:
        """The synthetic demo dataset used when no MovieLens directory is configured."""
        return self.datasets / "synthetic-default"


def paths() -> Paths:
    """The home's paths (only `MOVIEREC_HOME` and `MOVIEREC_LANDING_DIR` are read)."""
    home = resolve_home()
    return Paths(home, resolve_landing(home))


def configured_data_dir() -> Path:
    """The MovieLens directory in use: `$MOVIEREC_DATA_DIR`, else the synthetic default."""
    return Settings.from_env().dataset

# Trainings are serialised across runs by this Dagster concurrency pool (`trained_model` is in it);
# its limit is the instance's `concurrency.pools.default_limit` (instance.py), created up front.
TRAINING_POOL = "training"
