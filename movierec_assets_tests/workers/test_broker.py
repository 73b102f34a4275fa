"""The local Redis broker: 127.0.0.1, a password kept out of command lines and logs, stopped by PID."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest
import redis

from movierec_assets.settings import Settings
from movierec_assets.workers.broker import (
    REDIS_SERVER,
    BrokerError,
    LocalRedis,
    broker_url,
    check_broker,
    pid_alive,
)


def test_redis_listens_on_loopback_with_a_password(redis_broker: tuple[LocalRedis, str]) -> None:
    broker, url = redis_broker
    state = broker.running_state()
    assert state is not None and url.startswith("redis://:") and f"@127.0.0.1:{state.port}/0" in url
    password = url.split(":")[2].split("@")[0]
    assert len(password) >= 24
    assert stat.S_IMODE(broker.conf.stat().st_mode) == 0o600 and stat.S_IMODE(broker.dir.stat().st_mode) == 0o700
    cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes().decode()
    assert password not in cmdline and password not in broker.log_file.read_text()
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: nothing without the password
        redis.Redis(host="127.0.0.1", port=state.port, socket_timeout=3).ping()
    check_broker(url)
    assert _listening(state.port) == {"127.0.0.1"}


def _listening(port: int) -> set[str]:
    """The IPv4/IPv6 addresses with a socket listening on `port` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, st = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if st == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address)
    return found


def test_stop_by_pid_and_restart_on_the_same_port(redis_broker: tuple[LocalRedis, str]) -> None:
    broker, url = redis_broker
    state = broker.running_state()
    assert state is not None
    assert "bind 127.0.0.1" in broker.conf.read_text()
    assert broker.stop() and not pid_alive(state.pid, REDIS_SERVER) and broker.running_state() is None
    assert broker.stop() is False
    assert broker.ensure_running() == url  # same password, same port: URLs held by workers stay valid


def test_a_dead_broker_is_one_redacted_line_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(BrokerError) as info:
        check_broker(f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    message = str(info.value)
    assert time.monotonic() - t0 < 5
    assert "MOVIEREC_BROKER_URL" in message and "hunter2" not in message and "\n" not in message
    assert f"redis://:***@127.0.0.1:{port}/0" in message


def test_the_default_broker_is_the_local_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOVIEREC_BROKER_URL", raising=False)
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    with pytest.raises(BrokerError, match="MOVIEREC_BROKER_URL is not set and the local Redis"):
        broker_url(Settings.from_env())
    monkeypatch.setenv("MOVIEREC_BROKER_URL", "redis://:x@broker.internal:6379/1")
    assert broker_url(Settings.from_env()) == "redis://:x@broker.internal:6379/1"
    assert not (tmp_path / "broker").exists() and os.environ["MOVIEREC_HOME"] == str(tmp_path)
