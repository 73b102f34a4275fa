"""Helpers of the fault tests: row digests, a killable child process, day files of real size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from movierec_assets.db.connect import connect

REPO = Path(__file__).resolve().parents[2]
HEADER = "userId,movieId,rating,timestamp"
# Movie ids no real dataset uses; each fault test inserts the ones it needs.
FAULT_MOVIES = list(range(970001, 970021))


@dataclass(frozen=True)
class Digest:
    """Order-independent fingerprint of a set of rows: count plus two sums of row hashes."""

    rows: int
    h1: int
    h2: int


_RATINGS_DIGEST = (
    "SELECT count(*), coalesce(sum(hashtext(r)), 0), coalesce(sum(hashtext('x' || r)), 0) FROM ("
    "SELECT user_id::text || ',' || movie_id::text || ',' || rating::text || ',' "
    "|| extract(epoch FROM rated_at)::bigint AS r FROM movielens.ratings WHERE partition_day IS NOT DISTINCT FROM %s::date) AS t"
)
_REJECTED_DIGEST = (
    "SELECT count(*), coalesce(sum(hashtext(raw_line || reason)), 0), coalesce(sum(line_number), 0) "
    "FROM movielens.rejected_ratings WHERE partition_day IS NOT DISTINCT FROM %s::date"
)


def day_digest(url: str, day: date | None) -> tuple[Digest, Digest]:
    """(ratings digest, rejected digest) of one partition day, or of the history (None)."""
    with connect(url) as conn:
        r = conn.execute(_RATINGS_DIGEST, (day,)).fetchone()
        q = conn.execute(_REJECTED_DIGEST, (day,)).fetchone()
    return Digest(*map(int, r)), Digest(*map(int, q))


def ensure_movies(url: str, ids: list[int] = FAULT_MOVIES) -> None:
    with connect(url) as conn:
        conn.execute(
            "INSERT INTO movielens.movies (movie_id, title, year, genres) "
            "SELECT m, 'Fault test movie ' || m, 1988, '{}' FROM unnest(%s::int[]) AS m ON CONFLICT DO NOTHING",
            (ids,),
        )


def clear_day(url: str, day: date) -> None:
    with connect(url) as conn:
        conn.execute("DELETE FROM movielens.ratings WHERE partition_day = %s", (day,))
        conn.execute("DELETE FROM movielens.rejected_ratings WHERE partition_day = %s", (day,))


def day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def write_day_file(landing: Path, day: date, n: int, seed: int, bad: int = 0) -> Path:
    """`n` valid, distinct ratings on `day` (users 1..n), then `bad` malformed lines."""
    return write_ratings_file(landing / f"{day.isoformat()}.csv", n, seed, bad, day_start(day), 86400)


def write_ratings_file(path: Path, n: int, seed: int, bad: int, t0: int, span: int) -> Path:
    """A ratings CSV (written atomically): `n` distinct valid rows in [t0, t0 + span), then `bad`
    malformed lines."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "userId": np.arange(1, n + 1, dtype=np.int64),
            "movieId": rng.choice(FAULT_MOVIES, n),
            "rating": rng.integers(1, 11, n) / 2,
            "timestamp": t0 + rng.integers(0, span, n),
        }
    )
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_csv(tmp, line_terminator="\n")
    if bad:
        with open(tmp, "a") as f:
            f.writelines(f"{i},not-a-movie,{seed % 5},x\n" for i in range(bad))
    os.replace(tmp, path)
    return path


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MOVIEREC_DATABASE_URL"] = url
    return env


@dataclass
class ChildRun:
    killed: bool
    returncode: int
    seconds_after_go: float
    output: str


def spawn_child(args: list[str], url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
        [sys.executable, str(Path(__file__).with_name("child.py")), *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(url), cwd=str(REPO),
    )


def wait_go(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Wait for the child's `go` line (it has imported everything); earlier lines are warnings."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        if line.strip() == "go":
            return proc
        seen.append(line)
    proc.wait(60)
    raise AssertionError("child did not start: " + "".join(seen)[-3000:])


def start_child(args: list[str], url: str) -> subprocess.Popen[str]:
    """Start the child and wait for its `go` line."""
    return wait_go(spawn_child(args, url))


def run_child(args: list[str], url: str, kill_after: float | None, timeout: float = 120) -> ChildRun:
    """Start the child, wait for its `go`, then SIGKILL it after `kill_after` s (None: let it finish)."""
    proc = start_child(args, url)
    assert proc.stdout is not None
    first = "go\n"
    t0 = time.perf_counter()
    killed = False
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed = True
    out = proc.stdout.read()
    rc = proc.wait(timeout)
    return ChildRun(killed, rc, time.perf_counter() - t0, first + out)


def leftover_tables(url: str) -> set[str]:
    """Every table and sequence in the project's schemas (to spot temp/new tables left behind)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('movielens', 'features', 'ml') AND c.relkind IN ('r', 'p', 'u', 'S', 'v', 'm')"
        ).fetchall()
    return {r[0] for r in rows}


def wait_no_backends(url: str, timeout: float = 20) -> None:
    """Wait until the killed children's server backends are gone (their locks released)."""
    deadline = time.monotonic() + timeout
    with connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            n = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'movierec' "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'"
            ).fetchone()[0]
            if n == 0:
                return
            time.sleep(0.05)
