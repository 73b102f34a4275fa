"""Faults on the distributed path: real dagster-celery workers on a real Redis.

- The worker process running a day partition load is SIGKILLed at a random moment: the day holds
  exactly the previous or exactly the new file, the run fails with a message naming the step and
  the signal (a dead process cannot ask for a RetryPolicy retry), the worker replaces its pool
  process, and a re-run loads the day exactly once.
- A broker that is down (or has no worker) at launch fails the run at once, in one line naming
  MOVIEREC_BROKER_URL, instead of waiting forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import date

import dagster as dg
import numpy as np
import pytest

from movierec_assets.movielens.split import split_manifest
from movierec_assets.movielens.synth import write_synthetic
from movierec_assets.workers.broker import LocalRedis
from movierec_assets.workers.runs import RunOutcome, run_job, step_pid_when_started
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import day_digest, ensure_movies, wait_no_backends, write_day_file
from movierec_assets_tests.workers.conftest import require_redis_server
from movierec_assets_tests.workers.support import DAILY_JOB, LOGGERS, Stack, open_stack

pytestmark = [pytest.mark.faults, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Task name .execute_plan. is already registered")]

STEP = "daily_partitioned_ratings"
ROWS = 50_000
KILLS = 3
VERSIONS = {"A": (1, 3), "B": (2, 5)}  # seed, malformed lines
LAUNCH_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, date]]:
    require_redis_server()
    home = traversable_tmpdir("movierec-celery-faults-")
    dataset = home / "datasets" / "tiny"
    write_synthetic(dataset, n_ratings=5_000, seed=3)
    day = split_manifest(dataset).future_days()[0]  # a partition of the definitions
    s = open_stack(home, dataset, 0, modes=("celery",))
    try:
        s.start_workers(2)
        yield s, day
    finally:
        s.close()
        shutil.rmtree(home, ignore_errors=True)


class _Killer(threading.Thread):
    """SIGKILLs the process running STEP `after` seconds after the step starts (in the newest run)."""

    def __init__(self, instance: dg.DagsterInstance, after: float, known: set[str]):
        super().__init__(daemon=True)
        self.instance, self.after, self.known = instance, after, known
        self.killed_pid: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            runs = [r for r in self.instance.get_runs(limit=3) if r.run_id not in self.known]
            pid = step_pid_when_started(self.instance, runs[0].run_id, STEP) if runs else None
            if pid:
                time.sleep(self.after)
                os.kill(pid, signal.SIGKILL)
                self.killed_pid = pid
                return
            time.sleep(0.02)


def _load(s: Stack, day: date, kill_after: float | None = None) -> tuple[RunOutcome, int | None]:
    instance = s.use("celery")
    killer = None
    if kill_after is not None:
        killer = _Killer(instance, kill_after, {r.run_id for r in instance.get_runs(limit=50)})
        killer.start()
    outcome = run_job(instance, DAILY_JOB, distributed=True, partition=day.isoformat(), run_config=LOGGERS)
    if killer is not None:
        killer.done.set()
        killer.join(10)
    return outcome, killer.killed_pid if killer else None


@pytest.mark.fault_scenario("crash mid-load", "SIGKILL of the Celery worker process running a day load (50k rows)")
def test_sigkill_of_a_worker_mid_day_load(stack: tuple[Stack, date], fault: FaultRecord) -> None:
    s, day = stack
    url = s.urls["celery"]
    ensure_movies(url)
    landing = s.home / "landing"
    digests, seconds = {}, []
    for name, (seed, bad) in VERSIONS.items():
        write_day_file(landing, day, ROWS, seed, bad)
        outcome, _ = _load(s, day)
        assert outcome.success, outcome.failure
        seconds.append(outcome.steps[STEP])
        digests[name] = day_digest(url, day)
        assert digests[name][0].rows == ROWS and digests[name][1].rows == bad
    state, rng, span = "B", np.random.default_rng(19), max(seconds) * 1.15
    outcomes = {"old": 0, "new": 0}
    for _ in range(KILLS):
        target = "A" if state == "B" else "B"
        write_day_file(landing, day, ROWS, *VERSIONS[target])
        outcome, killed = _load(s, day, kill_after=float(rng.uniform(0, span)))
        fault.tried += 1
        wait_no_backends(url)
        seen = day_digest(url, day)
        if seen not in (digests[target], digests[state]):
            fault.data_lost += abs(seen[0].rows - ROWS) or 1
            pytest.fail(f"after a kill the day holds a mix: {seen}")
        kind = "new" if seen == digests[target] else "old"
        if not outcome.success:  # the kill hit the step: a clear failure, then a re-run completes
            assert killed and f"[{STEP}]" in outcome.failure and "signal 9 (SIGKILL)" in outcome.failure, \
                outcome.failure[-2000:]
            reason = next(x for x in outcome.failure.splitlines() if "SIGKILL" in x)
            fault.note(f"run failed: {reason.strip()[:160]}")
            rerun, _ = _load(s, day)
            assert rerun.success, rerun.failure
            assert day_digest(url, day) == digests[target]  # exactly once: nothing duplicated
        state = target
        outcomes[kind] += 1
        fault.survived += 1
    fault.note(f"kills at random 0..{span:.2f}s after the step started; previous content kept {outcomes['old']}x, "
               f"new content committed {outcomes['new']}x; failed runs re-ran to exactly the new day")
    assert s.pool is not None and len(s.pool.workers()) == 2  # the workers outlived their pool process


@pytest.mark.fault_scenario("broker down", "Celery broker without workers, or down, at launch")
def test_a_broker_down_at_launch_is_a_clear_error(stack: tuple[Stack, date], fault: FaultRecord,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    s, day = stack
    idle_home = traversable_tmpdir("movierec-idle-broker-")
    idle = LocalRedis(idle_home)  # a broker no worker listens to
    url = idle.ensure_running()
    monkeypatch.setenv("MOVIEREC_BROKER_URL", url)
    password = url.split(":")[2].split("@")[0]
    try:
        for name, expected in (("no worker listens", "no Celery worker answers"), ("broker down", "does not answer")):
            if name == "broker down":
                idle.stop()
            outcome, _ = _load(s, day)
            fault.tried += 1
            assert not outcome.success and outcome.seconds < LAUNCH_LIMIT_S, outcome
            assert "MOVIEREC_BROKER_URL" in outcome.failure and expected in outcome.failure, outcome.failure
            assert password not in outcome.failure
            fault.survived += 1
            line = next(x for x in outcome.failure.splitlines() if "MOVIEREC_BROKER_URL" in x)
            fault.note(f"{name}: the run failed after {outcome.seconds:.1f}s: {line.strip()[:200]}")
    finally:
        idle.stop()
        shutil.rmtree(idle_home, ignore_errors=True)
