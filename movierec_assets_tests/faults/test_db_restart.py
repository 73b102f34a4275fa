"""The database goes away: a partition run fails with a clear one-line connection error, the retry
policy completes it after the restart with no duplicates, and connecting never hangs (<= 10 s).

Uses its OWN embedded server (own MOVIEREC_HOME), never the session's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import dagster as dg
import psycopg
import pytest

from movierec_assets.config import Paths
from movierec_assets.db.connect import DatabaseUnavailable, adbc_connect, connect
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import apply_migrations
from movierec_assets.ingest.days import lock_plan
from movierec_assets.partitions import DayRange
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import day_digest, ensure_movies, write_day_file
from movierec_assets_tests.ingest.days_support import materialize_days, tiny_asset

pytestmark = pytest.mark.faults

DAY = date(1988, 7, 4)
DAYS = DayRange(date(1988, 7, 1), date(1988, 7, 31), "faults-restart")
ROWS = 20_000
CONNECT_LIMIT_S = 10.0
SECRET = "s3cr3t-Pa55word"


@pytest.fixture(scope="module")
def own_server() -> Iterator[tuple[EmbeddedPostgres, str]]:
    server = EmbeddedPostgres(Paths(traversable_tmpdir("movierec-fault-pg-")))
    url = server.ensure_running()
    apply_migrations(url)
    yield server, url
    server.stop()


def _timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    t0 = time.perf_counter()
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None


def _open(url: str, adbc: bool) -> None:
    with (adbc_connect(url) if adbc else connect(url)):
        pass


@pytest.mark.fault_scenario("database restart", "connect to a dead port and to a server that never answers")
def test_connection_attempts_fail_fast_and_redacted(fault: FaultRecord) -> None:
    with socket.socket() as closed:  # a port with nothing listening
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    blackhole = socket.socket()  # accepts TCP connections (kernel backlog) and never says a word
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    try:
        targets = {"dead port": dead_port, "unresponsive": blackhole.getsockname()[1]}
        results: dict[str, tuple[float, BaseException | None]] = {}

        def attempt(name: str, port: int, adbc: bool) -> None:
            url = f"postgresql://movierec:{SECRET}@127.0.0.1:{port}/movierec"
            results[f"{name} ({'adbc' if adbc else 'psycopg'})"] = _timed(lambda: _open(url, adbc))

        threads = [threading.Thread(target=attempt, args=(n, p, a)) for n, p in targets.items() for a in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        blackhole.close()
    for name, (seconds, exc) in sorted(results.items()):
        fault.tried += 1
        assert isinstance(exc, DatabaseUnavailable), f"{name}: {exc!r}"
        assert seconds <= CONNECT_LIMIT_S + 1.5, f"{name}: took {seconds:.1f}s"
        assert SECRET not in str(exc) and "\n" not in str(exc), str(exc)
        assert "127.0.0.1" in str(exc), str(exc)  # names the server it tried
        fault.survived += 1
        fault.note(f"{name}: DatabaseUnavailable after {seconds:.1f}s")
    assert results["dead port (psycopg)"][0] < 3  # refused at once, not after the timeout


def _hold_day_lock(url: str, day: date) -> Callable[[], None]:
    """Hold the month lock the day loader needs, from another session (makes the run wait)."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    (month, _), *_ = lock_plan([day])[0]
    conn.execute("SELECT pg_advisory_lock(1297219585, %s)", (month,))
    return conn.close


@pytest.mark.fault_scenario("database restart", "server stopped while a partition run writes, then restarted")
def test_partition_run_survives_database_restart(own_server: tuple[EmbeddedPostgres, str], fault: FaultRecord,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server, url = own_server
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", url)
    landing = traversable_tmpdir("movierec-fault-landing-")
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(landing))
    ensure_movies(url)
    write_day_file(landing, DAY, ROWS, seed=5, bad=2)
    asset = tiny_asset(DAYS)
    release = _hold_day_lock(url, DAY)
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["result"] = materialize_days(asset, DAY, raise_on_error=False)

    runner = threading.Thread(target=run)
    runner.start()
    _wait_for_lock_waiter(url)
    fault.tried += 1
    server.stop()  # fast shutdown: the run's connection is terminated mid-transaction
    release()
    time.sleep(1.0)
    assert server.ensure_running() == url  # same port: the URL every process holds stays valid
    runner.join(120)
    assert not runner.is_alive(), "the run hangs after the restart"
    result: Any = outcome["result"]
    assert result.success, _failure_messages(result)
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries, "the first attempt did not fail"
    failure = _failure_info(retries[0].event_specific_data.error)  # type: ignore[union-attr]
    assert failure.cause is None and failure.context is None, "the failure drags its cause chain along"
    message = failure.message.removeprefix("dagster._core.definitions.events.Failure: ")
    assert "lost the database" in message or "cannot connect" in message, message
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 2, message
    assert SECRET not in message and url.split(":")[2].split("@")[0] not in message
    good, rejected = day_digest(url, DAY)
    assert (good.rows, rejected.rows) == (ROWS, 2)  # loaded once: no duplicates, nothing lost
    fault.survived += 1
    fault.note(f"first attempt: {message.strip()[:120]!r}; completed after {len(retries)} retry(ies)")


def _failure_info(error: Any) -> Any:
    """The dg.Failure the asset raised, inside Dagster's RetryRequested wrapper."""
    while error is not None and "events.Failure" not in error.message:
        error = error.cause or error.context
    assert error is not None, "no dg.Failure in the retry event"
    return error


def _wait_for_lock_waiter(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect(url, autocommit=True) as conn:
            n = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
        if n:
            return
        time.sleep(0.05)
    raise AssertionError("the run never reached its write transaction")


def _failure_messages(result: Any) -> str:
    return "; ".join(
        str(e.event_specific_data.error.message)  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    )
