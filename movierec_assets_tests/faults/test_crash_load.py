"""SIGKILL a real process in the middle of a load, at random moments: the table holds exactly the
previous content or exactly the new content, never a mix; nothing is left behind; the next run works.

Two versions (A, B) of the input are each loaded once to learn their digests and how long a load
takes; then each kill attempt loads the other version and is killed at a random moment spanning the
whole load (including just before and just after the commit).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import pytest

from movierec_assets.db.connect import connect
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.support import (
    FAULT_MOVIES,
    Digest,
    clear_day,
    day_digest,
    day_start,
    ensure_movies,
    leftover_tables,
    run_child,
    wait_no_backends,
    write_day_file,
    write_ratings_file,
)

pytestmark = pytest.mark.faults

DAY = date(1988, 6, 1)  # a day no dataset and no other test uses
ROWS = 200_000
KILLS = 10  # per kind: 20 in all
VERSIONS = {"A": (1, 3), "B": (2, 5)}  # seed, malformed lines


def _kill_loop(fault: FaultRecord, url: str, write: Callable[[str], None], args: list[str],
               digest: Callable[[], tuple[Digest, Digest]], seed: int) -> None:
    tables_before = leftover_tables(url)
    digests: dict[str, tuple[Digest, Digest]] = {}
    seconds = []
    for name, (_, bad) in VERSIONS.items():
        write(name)
        run = run_child(args, url, kill_after=None)
        assert run.returncode == 0, run.output
        seconds.append(run.seconds_after_go)
        digests[name] = digest()
        assert digests[name][0].rows == ROWS and digests[name][1].rows == bad
    assert digests["A"] != digests["B"]
    state, rng, span = "B", np.random.default_rng(seed), max(seconds) * 1.15
    outcomes = {"old": 0, "new": 0}
    for _ in range(KILLS):
        target = "A" if state == "B" else "B"
        write(target)
        run = run_child(args, url, kill_after=float(rng.uniform(0, span)))
        fault.tried += 1
        wait_no_backends(url)
        seen = digest()
        if seen == digests[target]:
            state, kind = target, "new"
        elif seen == digests[state]:
            kind = "old"
        else:
            fault.data_lost += abs(seen[0].rows - ROWS) or 1
            pytest.fail(f"after a kill at {run.seconds_after_go:.2f}s the table holds a mix: {seen}")
        assert run.killed or kind == "new", run.output
        outcomes[kind] += 1
        fault.survived += 1
    fault.note(f"kills at random 0..{span:.2f}s after start; previous content kept {outcomes['old']}x, "
               f"new content committed {outcomes['new']}x")
    assert leftover_tables(url) == tables_before
    final = "A" if state == "B" else "B"  # the next run succeeds and loads exactly the new input
    write(final)
    run = run_child(args, url, kill_after=None)
    assert run.returncode == 0, run.output
    assert digest() == digests[final]


@pytest.mark.fault_scenario("crash mid-load", "SIGKILL during a day partition load (200k rows)")
def test_sigkill_during_day_load_leaves_old_or_new_day(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    clear_day(pg_url, DAY)
    landing = traversable_tmpdir("movierec-fault-landing-")

    def write(name: str) -> None:
        write_day_file(landing, DAY, ROWS, *VERSIONS[name])

    _kill_loop(fault, pg_url, write, ["days", DAY.isoformat(), str(landing)], lambda: day_digest(pg_url, DAY), 9)
    clear_day(pg_url, DAY)


@pytest.mark.fault_scenario("crash mid-load", "SIGKILL during a history reload (replace_history, 200k rows)")
def test_sigkill_during_history_reload_leaves_old_or_new_history(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    clear_day(pg_url, DAY)
    source = traversable_tmpdir("movierec-fault-history-") / "ratings.csv"
    t0 = day_start(date(1987, 1, 1))

    def write(name: str) -> None:
        write_ratings_file(source, ROWS, *VERSIONS[name], t0, 300 * 86400)

    # A partition row must survive every history reload untouched.
    with connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO movielens.ratings (user_id, movie_id, rating, rated_at, partition_day) "
            "VALUES (1, %s, 4.5, '1988-06-01 12:00+00', %s)", (FAULT_MOVIES[0], DAY),
        )
    _kill_loop(fault, pg_url, write, ["history", str(source)], lambda: day_digest(pg_url, None), 11)
    assert day_digest(pg_url, DAY)[0].rows == 1
    with connect(pg_url) as conn:  # leave no history behind for other tests
        conn.execute("DELETE FROM movielens.ratings WHERE partition_day IS NULL")
        conn.execute("DELETE FROM movielens.rejected_ratings WHERE partition_day IS NULL")
    clear_day(pg_url, DAY)
