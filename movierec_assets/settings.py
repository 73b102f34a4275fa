"""`Settings`: every environment variable movierec reads, resolved and validated in one place.

`Settings.from_env()` reads the environment once; the definitions are a pure function of the
result (`movierec_assets.definitions.build_definitions`). A bad value raises `SettingsError`,
whose message names the variable and says what is expected. Reading settings touches no file
and starts no server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_HOME = "MOVIEREC_HOME"
ENV_DATABASE_URL = "MOVIEREC_DATABASE_URL"
ENV_DATA_DIR = "MOVIEREC_DATA_DIR"
ENV_LANDING_DIR = "MOVIEREC_LANDING_DIR"
ENV_PG_PORT = "MOVIEREC_PG_PORT"
ENV_PG_USER = "MOVIEREC_PG_OS_USER"
ENV_EXECUTOR = "MOVIEREC_EXECUTOR"
ENV_TRAIN_STRATEGY = "MOVIEREC_TRAIN_STRATEGY"
ENV_REPLAY_CRON = "MOVIEREC_REPLAY_CRON"
ENV_BROKER_URL = "MOVIEREC_BROKER_URL"

EXECUTORS = ("default", "multiprocess", "celery")
TRAIN_STRATEGIES = ("default", "mirrored", "multi_worker")
DEFAULT_REPLAY_CRON = "0 0 * * *"  # daily; "* * * * *" replays a day a minute for demos
_OS_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class SettingsError(ValueError):
    """An environment variable has a value movierec cannot use; the message names the variable."""


def _text(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = _text(env, name).lower().replace("-", "_") or choices[0]
    if value not in choices:
        raise SettingsError(f"{name}={env.get(name)!r}: expected one of {', '.join(choices)}")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = _text(env, name)
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name}={raw!r}: expected a TCP port number 1..65535")
    return int(raw)


def _directory(env: Mapping[str, str], name: str, default: Path, must_exist: bool = False) -> Path:
    raw = _text(env, name)
    path = Path(raw).expanduser().absolute() if raw else default
    if "\x00" in str(path):
        raise SettingsError(f"{name}: the path contains a NUL byte")
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{name}={raw!r}: {path} exists and is not a directory")
    if must_exist and not path.is_dir():
        raise SettingsError(f"{name}={raw!r}: {path} is not a directory (a MovieLens folder with ratings.csv)")
    return path


def _database_url(env: Mapping[str, str]) -> str | None:
    url = _text(env, ENV_DATABASE_URL)
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        scheme = url.split("://", 1)[0] if "://" in url else "no scheme"  # never the rest: it may hold a password
        raise SettingsError(f"{ENV_DATABASE_URL}: expected a postgresql:// URL, got {scheme!r}")
    return url


BROKER_SCHEMES = ("redis", "rediss", "amqp", "pyamqp")


def _broker_url(env: Mapping[str, str]) -> str | None:
    url = _text(env, ENV_BROKER_URL)
    if not url:
        return None
    scheme = url.split("://", 1)[0].lower() if "://" in url else "no scheme"  # never the rest: a password
    if scheme not in BROKER_SCHEMES:
        raise SettingsError(f"{ENV_BROKER_URL}: expected a {', '.join(s + '://' for s in BROKER_SCHEMES)} URL, "
                            f"got {scheme!r}")
    return url


def _cron(env: Mapping[str, str]) -> str:
    cron = _text(env, ENV_REPLAY_CRON) or DEFAULT_REPLAY_CRON
    from dagster._utils.schedules import is_valid_cron_string  # dagster (~0.6 s) only when resolving Settings

    if not is_valid_cron_string(cron):
        raise SettingsError(f"{ENV_REPLAY_CRON}={cron!r}: not a valid cron schedule (e.g. '0 0 * * *')")
    return cron


def _os_user(env: Mapping[str, str]) -> str | None:
    user = _text(env, ENV_PG_USER)
    if user and not _OS_USER.match(user):
        raise SettingsError(f"{ENV_PG_USER}={user!r}: expected a plain OS user name")
    return user or None


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    """`MOVIEREC_HOME` alone (absolute), default `.movierec/` in the working directory."""
    env = os.environ if env is None else env
    return _directory(env, ENV_HOME, Path.cwd().absolute() / ".movierec")


def resolve_landing(home: Path, env: Mapping[str, str] | None = None) -> Path:
    """`MOVIEREC_LANDING_DIR` alone, default `home/landing/ratings`."""
    env = os.environ if env is None else env
    return _directory(env, ENV_LANDING_DIR, home / "landing" / "ratings")


def server_options(env: Mapping[str, str] | None = None) -> tuple[int | None, str | None]:
    """(`MOVIEREC_PG_PORT`, `MOVIEREC_PG_OS_USER`) alone: the embedded server's own settings."""
    env = os.environ if env is None else env
    return _port(env, ENV_PG_PORT), _os_user(env)


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. Paths are absolute; `data_dir` None means the synthetic default."""

    home: Path
    data_dir: Path | None
    landing_dir: Path
    executor: str = "default"
    train_strategy: str = "default"
    replay_cron: str = DEFAULT_REPLAY_CRON
    pg_port: int | None = None
    pg_os_user: str | None = None
    database_url: str | None = field(default=None, repr=False)  # holds a password: never in a repr
    broker_url: str | None = field(default=None, repr=False)  # None: the local Redis; may hold a password

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = resolve_home(env)
        data_dir = _directory(env, ENV_DATA_DIR, home, must_exist=True) if _text(env, ENV_DATA_DIR) else None
        return cls(
            home=home,
            data_dir=data_dir,
            landing_dir=resolve_landing(home, env),
            executor=_choice(env, ENV_EXECUTOR, EXECUTORS),
            train_strategy=_choice(env, ENV_TRAIN_STRATEGY, TRAIN_STRATEGIES),
            replay_cron=_cron(env),
            pg_port=server_options(env)[0],
            pg_os_user=server_options(env)[1],
            database_url=_database_url(env),
            broker_url=_broker_url(env),
        )

    @property
    def default_dataset(self) -> Path:
        """Where the synthetic default dataset lives (generated by the CLI on first use)."""
        return self.home / "datasets" / "synthetic-default"

    @property
    def dataset(self) -> Path:
        """The MovieLens directory in use: `MOVIEREC_DATA_DIR`, else the synthetic default."""
        return self.data_dir or self.default_dataset
