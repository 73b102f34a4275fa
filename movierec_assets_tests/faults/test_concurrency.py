"""Many day loads at once, as real processes: 8 different days, the same day three times, and a
whole-month range overlapping two of them. Every process succeeds (a deadlock would be detected by
PostgreSQL and retried by the loader), and the final counts are exact."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest

from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import (
    clear_day,
    day_digest,
    ensure_movies,
    spawn_child,
    wait_go,
    write_day_file,
)

pytestmark = pytest.mark.faults

SINGLE_DAYS = [date(1988, 8, d) for d in (3, 9, 15, 21, 27, 31)] + [date(1988, 9, 1), date(1988, 9, 2)]
SEPTEMBER = [date(1988, 9, 1) + timedelta(days=i) for i in range(30)]
SAME_DAY = date(1988, 8, 15)


@pytest.mark.fault_scenario("concurrency", "8 days + the same day 3x + an overlapping month, as 11 processes")
def test_concurrent_day_loads_are_exact(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    landing = traversable_tmpdir("movierec-fault-landing-")
    all_days = sorted(set(SINGLE_DAYS) | set(SEPTEMBER))
    expected = {}
    for i, day in enumerate(all_days):
        clear_day(pg_url, day)
        expected[day] = 3000 + 37 * i
        write_day_file(landing, day, expected[day], seed=i, bad=1 + i % 3)
    jobs = [[d] for d in SINGLE_DAYS] + [[SAME_DAY], [SAME_DAY], SEPTEMBER]
    spawned = [spawn_child(["days", ",".join(d.isoformat() for d in days), str(landing), "--wait"], pg_url)
               for days in jobs]
    procs = [wait_go(p) for p in spawned]
    t0 = time.perf_counter()
    for p in procs:  # the start gun: every process is imported and waiting
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    seconds = time.perf_counter() - t0
    fault.tried += len(procs)
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    attempts = [int(m[1]) for out in outputs if (m := re.search(r"attempts=(\d+)", out))]
    assert len(attempts) == len(procs)
    for i, day in enumerate(all_days):
        good, rejected = day_digest(pg_url, day)
        lost = abs(good.rows - expected[day]) + abs(rejected.rows - (1 + i % 3))
        fault.data_lost += lost
        assert lost == 0, f"{day}: {good.rows} rows / {rejected.rows} rejects, expected {expected[day]}"
    fault.survived += len(procs)
    fault.note(f"{len(procs)} processes, {len(all_days)} days, all exact in {seconds:.1f}s; "
               f"transaction retries: {sum(a - 1 for a in attempts)}")
    for day in all_days:
        clear_day(pg_url, day)
