"""Fixtures of the Celery tests: a real Redis (Debian's redis-server) on 127.0.0.1 with a password,
and a whole stack with real dagster-celery workers. Everything started is stopped by PID."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec_assets.workers.broker import REDIS_SERVER, LocalRedis


def require_redis_server() -> None:
    """The Celery tests are never skipped: `make test` installs redis-server (`make system-deps`)."""
    if shutil.which(REDIS_SERVER) is None:
        pytest.fail(f"{REDIS_SERVER} is not installed: run `make system-deps` as root "
                    "(or `apt-get install redis-server`)", pytrace=False)


@pytest.fixture
def redis_broker(tmp_path: Path) -> Iterator[tuple[LocalRedis, str]]:
    """A private Redis on a free 127.0.0.1 port, password-protected; stopped by its PID afterwards."""
    require_redis_server()
    broker = LocalRedis(tmp_path)
    url = broker.ensure_running()
    yield broker, url
    broker.stop()
