"""Shared fixtures: one real embedded PostgreSQL per test session, and the real MovieLens sample."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ML_SMALL_CANDIDATES = [
    os.environ.get("MOVIEREC_ML_SMALL", ""),
    str(REPO.parent / "shared" / "movielens" / "ml-latest-small"),  # relative to the checkout
]


def traversable_tmpdir(prefix: str) -> Path:
    """A temp dir the embedded server's OS user (nobody, under root) can traverse.

    pytest's own tmp_path lives under a mode-0700 folder, which `nobody` cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def movierec_home() -> Iterator[Path]:
    home = traversable_tmpdir("movierec-test-")
    old = {k: os.environ.get(k) for k in ("MOVIEREC_HOME", "MOVIEREC_DATABASE_URL")}
    os.environ["MOVIEREC_HOME"] = str(home)
    os.environ.pop("MOVIEREC_DATABASE_URL", None)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def pg_url(movierec_home: Path) -> Iterator[str]:
    """A real PostgreSQL 18 server (embedded), migrated; MOVIEREC_DATABASE_URL points at it."""
    from movierec_assets.db.embedded import EmbeddedPostgres
    from movierec_assets.db.migrations import apply_migrations

    server = EmbeddedPostgres()
    url = server.ensure_running()
    apply_migrations(url)
    os.environ["MOVIEREC_DATABASE_URL"] = url
    yield url
    server.stop()
    shutil.rmtree(movierec_home, ignore_errors=True)


@pytest.fixture(scope="session")
def ml_small() -> Path:
    """The real GroupLens ml-latest-small directory; tests that need it skip when it is absent."""
    for candidate in ML_SMALL_CANDIDATES:
        if candidate and (Path(candidate) / "ratings.csv").exists():
            return Path(candidate)
    pytest.skip("ml-latest-small not found (set MOVIEREC_ML_SMALL)")
