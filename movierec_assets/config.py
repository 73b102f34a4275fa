"""Paths and settings, all read from the environment (never from code or files in the repo)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "MOVIEREC_HOME"
ENV_DATABASE_URL = "MOVIEREC_DATABASE_URL"
ENV_DATA_DIR = "MOVIEREC_DATA_DIR"
ENV_LANDING_DIR = "MOVIEREC_LANDING_DIR"
ENV_PG_PORT = "MOVIEREC_PG_PORT"
ENV_PG_USER = "MOVIEREC_PG_OS_USER"


def movierec_home() -> Path:
    """`$MOVIEREC_HOME`, defaulting to `.movierec/` in the working directory."""
    return Path(os.environ.get(ENV_HOME) or Path.cwd() / ".movierec").absolute()


@dataclass(frozen=True)
class Paths:
    home: Path

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
        env = os.environ.get(ENV_LANDING_DIR)
        return Path(env).absolute() if env else self.home / "landing" / "ratings"

    @property
    def default_dataset(self) -> Path:
        """The synthetic demo dataset used when no MovieLens directory is configured."""
        return self.datasets / "synthetic-default"


def paths() -> Paths:
    return Paths(movierec_home())


def configured_data_dir() -> Path:
    """The MovieLens directory in use: `$MOVIEREC_DATA_DIR`, else the synthetic default."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).absolute() if env else paths().default_dataset
