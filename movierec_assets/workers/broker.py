"""The Celery broker: `MOVIEREC_BROKER_URL`, else a local Redis under `$MOVIEREC_HOME/broker/`.

The local Redis is started like the embedded database: Debian's `redis-server`, bound to 127.0.0.1
on a free port (kept across restarts), with a generated password in `redis.conf` (mode 0600, never
on a command line, never logged), and stopped by the PID it records. Redis runs fine as root, so
unlike PostgreSQL it is not dropped to `nobody`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from movierec_assets.config import paths
from movierec_assets.settings import ENV_BROKER_URL, Settings

REDIS_SERVER = "redis-server"
_PASSWORD_IN_TEXT = re.compile(r"((?:redis|rediss|amqp|pyamqp)://[^:/@\s]*:)([^@\s]+)(@)")
CHECK_TIMEOUT_S = 3.0


class BrokerError(RuntimeError):
    """The broker cannot be started, or does not answer; the message names `MOVIEREC_BROKER_URL`."""


def redact(url: str) -> str:
    """The broker URL with its password replaced by '***'."""
    return _PASSWORD_IN_TEXT.sub(r"\1***\3", url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int, name: str) -> bool:
    """True while `pid` runs a program whose command line contains `name` (no zombie, no reused PID)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that exited
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and name in cmdline


def stop_pid(pid: int, name: str, sig: int = signal.SIGTERM, grace_s: float = 30.0) -> bool:
    """Send `sig` to `pid` (if it still runs `name`), wait up to `grace_s`, then SIGKILL; True if it ran."""
    if not pid_alive(pid, name):
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid, name):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int

    def url(self, password: str) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/0"


class LocalRedis:
    """Lifecycle of the Redis under `home/broker/`: start (or reuse), status, stop by PID."""

    def __init__(self, home: Path | None = None, port: int | None = None):
        self.dir = (home or paths().home) / "broker"
        self.conf = self.dir / "redis.conf"
        self.state_file = self.dir / "broker.json"
        self.log_file = self.dir / "redis.log"
        self.port = port

    def ensure_running(self, timeout_s: float = 30.0) -> str:
        """Start Redis unless this home's is running; return its URL (with the password)."""
        state = self.running_state()
        if state is not None:
            return state.url(self._password())
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            raise BrokerError(f"{REDIS_SERVER} not found: install Debian's redis-server (`make system-deps`) "
                              f"or set {ENV_BROKER_URL} to a broker of your own")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        port = self.port or self._previous_port() or _free_port()
        self._write_conf(port)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - fixed binary; the password is in the 0600 file
                [binary, str(self.conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(self.dir), start_new_session=True,
            )
        state = BrokerState(pid=proc.pid, port=port)
        self._wait_answering(state, proc, timeout_s)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.__dict__))
        tmp.replace(self.state_file)
        return state.url(self._password())

    def stop(self) -> bool:
        """Stop this home's Redis by its PID; False if it was not running."""
        state = self._recorded()
        if state is None:
            return False
        return stop_pid(state.pid, REDIS_SERVER)

    def running_state(self) -> BrokerState | None:
        """The recorded state if this home's Redis process is alive and answers, else None."""
        state = self._recorded()
        if state is None or not pid_alive(state.pid, REDIS_SERVER) or not self.conf.exists():
            return None
        return state if _answers(state.url(self._password())) else None

    def status(self) -> dict[str, object]:
        state = self.running_state()
        return {"running": state is not None, "pid": state.pid if state else None,
                "port": state.port if state else None, "dir": str(self.dir)}

    def _recorded(self) -> BrokerState | None:
        try:
            return BrokerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _previous_port(self) -> int | None:
        state = self._recorded()
        return state.port if state and _port_is_free(state.port) else None

    def _password(self) -> str:
        for line in self.conf.read_text().splitlines():
            if line.startswith("requirepass "):
                return line.split(" ", 1)[1].strip()
        raise BrokerError(f"{self.conf} has no requirepass line")

    def _write_conf(self, port: int) -> None:
        password = self._password() if self.conf.exists() else secrets.token_urlsafe(24)
        lines = [
            "bind 127.0.0.1", "protected-mode yes", f"port {port}", f"requirepass {password}",
            "daemonize no", f"dir {self.dir}", 'save ""', "appendonly no", "loglevel notice",
            f"pidfile {self.dir / 'redis.pid'}",
        ]
        tmp = self.conf.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        tmp.replace(self.conf)

    def _wait_answering(self, state: BrokerState, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = state.url(self._password())
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    stop_pid(proc.pid, REDIS_SERVER)
                tail = self.log_file.read_text(errors="replace")[-1500:]
                raise BrokerError(f"{REDIS_SERVER} did not start on 127.0.0.1:{state.port}: {tail}")
            time.sleep(0.05)


def _answers(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    try:
        check_broker(url, timeout_s)
    except BrokerError:
        return False
    return True


def check_broker(url: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Raise `BrokerError` (one redacted line naming MOVIEREC_BROKER_URL) unless the broker answers."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or ''}"
    try:
        if parts.scheme in ("redis", "rediss"):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout_s) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure means "no broker": one line, redacted
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise BrokerError(f"the Celery broker at {redact(url)} does not answer ({where}: {reason}); "
                          f"start it (`movierec workers start`) or fix {ENV_BROKER_URL}") from None


def broker_url(settings: Settings | None = None, start_local: bool = False) -> str:
    """`MOVIEREC_BROKER_URL` if set, else the local Redis's URL (started when `start_local`)."""
    settings = settings or Settings.from_env()
    if settings.broker_url:
        return settings.broker_url
    local = LocalRedis(settings.home)
    if start_local:
        return local.ensure_running()
    state = local.running_state()
    if state is None:
        raise BrokerError(f"{ENV_BROKER_URL} is not set and the local Redis under {local.dir} is not running: "
                          f"start it with `movierec workers start`, or set {ENV_BROKER_URL}")
    return state.url(local._password())  # noqa: SLF001 - same module
