"""N `dagster-celery` worker processes on this machine, with the same home, database and dataset.

Each worker is started through dagster-celery's own CLI (`dagster-celery worker start -A
dagster_celery.app -n movierec-<i> -q dagster -- ...`), in the foreground under a launcher process,
so that Celery writes the worker's own PID to `$MOVIEREC_HOME/workers/movierec-<i>.pid`. Stopping
signals that PID (a warm shutdown: a running step finishes), then the pool children and launcher.

The workers' Celery settings come from a `dagster_celery_config` module written to
`$MOVIEREC_HOME/workers/config/`, first on their PYTHONPATH: it resolves the broker URL from the
environment at import, so the password is never written by the CLI (its `-y` option would write the
resolved URL into a file under DAGSTER_HOME) nor put on a command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from movierec_assets.workers.broker import broker_url, pid_alive, stop_pid

QUEUE = "dagster"
NAME_PREFIX = "movierec-"
CONFIG_MODULE = """\
# Written by `movierec workers start`: the Celery settings of movierec's dagster-celery workers.
# The broker URL is resolved from the environment when the worker imports this module.
from movierec_assets.workers.pool import worker_settings as _worker_settings

globals().update(_worker_settings())
"""


def worker_settings() -> dict[str, Any]:
    """Celery settings of a worker: the broker from MOVIEREC_BROKER_URL (else the local Redis)."""
    return {
        "broker_url": broker_url(),
        "result_backend": "rpc://",
        # A step whose process dies is reported (WorkerLostError) rather than silently lost.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
    }


@dataclass(frozen=True)
class Worker:
    name: str
    pid: int  # the Celery worker (main process)
    launcher_pid: int  # `dagster-celery worker start`, waiting on it
    log: str


class WorkerPool:
    """The workers recorded in `home/workers/workers.json`."""

    def __init__(self, home: Path):
        self.dir = home / "workers"
        self.state_file = self.dir / "workers.json"

    def start(self, n: int, env: Mapping[str, str], timeout_s: float = 180.0) -> list[Worker]:
        """Start `n` workers (each with one pool process) and wait until each answers a ping."""
        running = self.workers()
        if running:
            raise RuntimeError(f"{len(running)} worker(s) already running under {self.dir}: stop them first")
        config_dir = self.dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "dagster_celery_config.py").write_text(CONFIG_MODULE)
        child_env = _worker_env(env, config_dir)
        started = []
        for i in range(1, n + 1):
            started.append(self._launch(f"{NAME_PREFIX}{i}", child_env))
        workers = self._wait_ready(started, child_env, timeout_s)
        self._write(workers)
        return workers

    def stop(self, grace_s: float = 60.0) -> int:
        """Stop every recorded worker by PID; the number that were running."""
        stopped = 0
        for w in self._recorded():
            children = _children(w.pid)
            stopped += int(stop_pid(w.pid, "celery", signal.SIGTERM, grace_s))
            for pid in children:
                stop_pid(pid, "celery", signal.SIGKILL, 5)
            stop_pid(w.launcher_pid, "dagster-celery", signal.SIGTERM, 10)
        self.state_file.unlink(missing_ok=True)
        return stopped

    def workers(self) -> list[Worker]:
        """The recorded workers whose process is alive."""
        return [w for w in self._recorded() if pid_alive(w.pid, "celery")]

    def status(self, ping_s: float = 3.0) -> dict[str, Any]:
        alive = self.workers()
        answering: list[str] = []
        if alive:
            from movierec_assets.workers.executor import ping_workers

            answering = ping_workers(broker_url(), ping_s)
        return {"dir": str(self.dir), "workers": [
            {**asdict(w), "answers": any(a.startswith(w.name + "@") for a in answering)} for w in alive]}

    def _launch(self, name: str, env: Mapping[str, str]) -> tuple[str, subprocess.Popen[bytes], Path, Path]:
        pidfile, log = self.dir / f"{name}.pid", self.dir / f"{name}.log"
        pidfile.unlink(missing_ok=True)
        cmd = [str(Path(sys.executable).with_name("dagster-celery")), "worker", "start", "-A", "dagster_celery.app",
               "-n", name, "-q", QUEUE, "-l", "INFO", "--", "--concurrency=1", f"--pidfile={pidfile}",
               "--without-gossip", "--without-mingle"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no secret in it
                cmd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=str(self.dir), start_new_session=True,
            )
        return name, proc, pidfile, log

    def _wait_ready(self, started: list[tuple[str, subprocess.Popen[bytes], Path, Path]], env: Mapping[str, str],
                    timeout_s: float) -> list[Worker]:
        from movierec_assets.workers.executor import ping_workers

        url = broker_url()
        deadline = time.monotonic() + timeout_s
        while True:
            failed = [(n, log) for n, p, _, log in started if p.poll() is not None]
            if failed:
                self._abort(started)
                name, log = failed[0]
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {name} exited at start (log {log}):\n{tail}")
            ready = all(pf.exists() for _, _, pf, _ in started)
            answering = ping_workers(url, 1.0, limit=len(started)) if ready else []
            if all(any(a.startswith(n + "@") for a in answering) for n, *_ in started):
                return [Worker(n, int(pf.read_text().strip()), p.pid, str(log)) for n, p, pf, log in started]
            if time.monotonic() > deadline:
                self._abort(started)
                raise RuntimeError(f"workers did not answer within {timeout_s:.0f} s (logs in {self.dir})")
            time.sleep(0.5)

    def _abort(self, started: list[tuple[str, subprocess.Popen[bytes], Path, Path]]) -> None:
        for _, proc, pidfile, _ in started:
            if pidfile.exists():
                pid = int(pidfile.read_text().strip() or 0)
                if pid:
                    children = _children(pid)
                    stop_pid(pid, "celery", signal.SIGTERM, 10)
                    for child in children:
                        stop_pid(child, "celery", signal.SIGKILL, 5)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    def _recorded(self) -> list[Worker]:
        try:
            return [Worker(**w) for w in json.loads(self.state_file.read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def _write(self, workers: list[Worker]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(w) for w in workers], indent=1))
        tmp.replace(self.state_file)


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _worker_env(env: Mapping[str, str], config_dir: Path) -> dict[str, str]:
    """The workers' environment: the caller's, with our Celery config first on PYTHONPATH and this
    interpreter's `bin/` first on PATH (dagster-celery runs `celery` from PATH)."""
    out = dict(env)
    out["MOVIEREC_EXECUTOR"] = "celery"
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(config_dir), env.get("PYTHONPATH", "")) if p)
    out["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    out.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return out
