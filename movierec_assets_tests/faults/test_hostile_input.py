"""Hostile input: landing files, MovieLens directories, landing-zone names and API parameters.

Each is rejected (the whole file, with a clear message naming it) or quarantined (the line, with a
specific reason); nothing crashes, memory stays bounded, and no row is lost: good + rejected equals
the data lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from movierec_assets.db.connect import connect
from movierec_assets.ingest.days import DayLoadError, load_days
from movierec_assets.ingest.landing import scan
from movierec_assets.ingest.validate import IngestError, parse_ratings_file
from movierec_assets.serving.online.api import create_app
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.hostile_support import BAD_FILES, BAD_LINES, CSV_INJECTION, SQL
from movierec_assets_tests.faults.support import (
    REPO,
    clear_day,
    day_digest,
    day_start,
    ensure_movies,
    write_day_file,
)
from movierec_assets_tests.serving.helpers import make_world

pytestmark = pytest.mark.faults

DAY = date(1988, 10, 5)
GB = 1024**3
RSS_LIMIT = 1.5 * GB


def _hostile_day_file(landing: Path) -> tuple[Path, int, int]:
    """A day file of good lines interleaved with every bad line; (path, good lines, bad lines)."""
    ts = str(day_start(DAY) + 3600).encode()
    lines = []
    for i, (bad, _) in enumerate(BAD_LINES):
        lines.append(f"{100 + i},970001,{(i % 10 + 1) / 2},{day_start(DAY) + i}".encode())
        lines.append(bad.replace(b"{ts}", ts))
    path = landing / f"{DAY.isoformat()}.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\r\n" + b"\r\n".join(lines) + b"\r\n")
    return path, len(BAD_LINES), len(BAD_LINES)


@pytest.mark.fault_scenario("hostile input", "bad ratings lines (bytes, sizes, numbers, SQL, CSV injection)")
def test_hostile_lines_are_quarantined_with_reasons(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    clear_day(pg_url, DAY)
    landing = traversable_tmpdir("movierec-fault-landing-")
    path, n_good, n_bad = _hostile_day_file(landing)
    parsed = parse_ratings_file(path)
    fault.tried += n_bad
    assert parsed.good.height + parsed.rejected.height == n_good + n_bad  # no line lost
    assert parsed.good.height == n_good
    reasons = dict(zip(parsed.rejected["line_number"], parsed.rejected["reason"], strict=True))
    for i, (_, expected) in enumerate(BAD_LINES):
        line_number = 2 + 2 * i + 1
        assert expected in reasons[line_number], (line_number, reasons[line_number])
        fault.survived += 1
    assert max(len(r) for r in parsed.rejected["raw_line"]) <= 1003  # the 10 MB line is not kept whole

    # End to end: the good rows load, every bad line is in the quarantine, SQL text stays text.
    report = load_days(pg_url, [DAY], landing)
    assert (report.rows_loaded, report.rows_rejected) == (n_good, n_bad)
    good, rejected = day_digest(pg_url, DAY)
    assert (good.rows, rejected.rows) == (n_good, n_bad)
    with connect(pg_url) as conn:
        stored = conn.execute(
            "SELECT raw_line, reason, source_file FROM movielens.rejected_ratings WHERE partition_day = %s "
            "AND raw_line LIKE %s", (DAY, "%DROP TABLE%"),
        ).fetchall()
        assert conn.execute("SELECT to_regclass('movielens.ratings') IS NOT NULL").fetchone()[0]
    assert len(stored) == 2 and all(SQL in raw and src == path.name for raw, _, src in stored)
    clear_day(pg_url, DAY)


@pytest.mark.fault_scenario("hostile input", "files that are not ratings CSVs (empty, columns, binary)")
def test_hostile_files_are_refused_naming_the_file(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    landing = traversable_tmpdir("movierec-fault-landing-")
    write_day_file(landing, DAY, 500, seed=3)
    load_days(pg_url, [DAY], landing)
    before = day_digest(pg_url, DAY)
    for name, content, expected in BAD_FILES:
        fault.tried += 1
        path = landing / f"{DAY.isoformat()}.csv"
        path.write_bytes(content)
        with pytest.raises(IngestError, match=None) as err:
            parse_ratings_file(path)
        assert path.name in str(err.value) and expected in str(err.value), (name, str(err.value))
        with pytest.raises(DayLoadError) as day_err:
            load_days(pg_url, [DAY], landing)
        assert path.name in str(day_err.value)
        assert day_digest(pg_url, DAY) == before, f"{name}: the day's previous rows changed"
        fault.survived += 1
    # A header-only file is a valid, empty day (the replay writes one for days without ratings).
    (landing / f"{DAY.isoformat()}.csv").write_bytes(b"userId,movieId,rating,timestamp\n")
    assert load_days(pg_url, [DAY], landing).rows_loaded == 0
    assert day_digest(pg_url, DAY)[0].rows == 0
    clear_day(pg_url, DAY)


@pytest.mark.fault_scenario("hostile input", "landing zone: symlinks, path traversal, FIFOs, dirs, 2 GB file")
def test_landing_zone_refuses_links_traversal_and_huge_files(pg_url: str, fault: FaultRecord) -> None:
    ensure_movies(pg_url)
    landing = traversable_tmpdir("movierec-fault-landing-")
    outside = traversable_tmpdir("movierec-fault-outside-")
    secret = write_day_file(outside, DAY, 10, seed=1)
    days = [date(1988, 10, d) for d in (10, 11, 12, 13, 14)]
    for d in days:
        clear_day(pg_url, d)
    (landing / f"{days[0].isoformat()}.csv").symlink_to(secret)  # a link to a real, valid file
    (landing / f"{days[1].isoformat()}.csv").mkdir()
    os.mkfifo(landing / f"{days[2].isoformat()}.csv")  # opening it would block forever
    sparse = landing / f"{days[3].isoformat()}.csv"
    with open(sparse, "wb") as f:
        f.write(b"userId,movieId,rating,timestamp\n")
        f.truncate(2 * GB)  # 2 GB, never written
    (landing / "..").joinpath("1988-10-15.csv")  # names with path parts cannot even be created here
    (landing / "1988-10-16.csv.lnk").write_text("x")
    (landing / "1988-13-40.csv").write_text("x")
    (landing / "١٩٨٨-١٠-١٦.csv").write_text("x")
    write_day_file(landing, days[4], 20, seed=2)  # the one good file
    found = scan(landing)
    fault.tried += 8
    assert set(found) == {days[4]}, found
    for d, why in zip(days[:4], ("symlink", "not a regular file", "not a regular file", "too large"), strict=True):
        with pytest.raises(DayLoadError, match=why) as err:
            load_days(pg_url, [d], landing)
        assert str(landing) in str(err.value)
        assert day_digest(pg_url, d)[0].rows == 0
    for name in ("../1988-10-15.csv", "/etc/passwd", "1988-10-15.csv/..", "..", "1988-10-15.csv\n"):
        from movierec_assets.ingest.landing import parse_day_name

        assert parse_day_name(name)[0] is None, name
    assert load_days(pg_url, [days[4]], landing).rows_loaded == 20
    fault.survived += 8
    for d in days:
        clear_day(pg_url, d)


_RSS_PROBE = textwrap.dedent('''
    import sys, types
    pkg = types.ModuleType("movierec_assets"); pkg.__path__ = [sys.argv[1] + "/movierec_assets"]
    sys.modules["movierec_assets"] = pkg
    from movierec_assets.ingest.validate import IngestError, parse_ratings_file
    from movierec_assets.movielens.source import DataFormatError, read_movies
    try:
        if sys.argv[3] == "movies":
            read_movies(sys.argv[2]); outcome = "accepted"
        else:
            p = parse_ratings_file(sys.argv[2])
            outcome = f"good={p.good.height} rejected={p.rejected.height} " + "|".join(p.rejected["reason"])
    except (IngestError, DataFormatError) as exc:
        outcome = f"refused: {exc}"
    # VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss across fork+exec (pytest's ~1 GB).
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) * 1024, outcome[:300])
''')


def _probe(path: Path, kind: str) -> tuple[int, str]:
    out = subprocess.run(  # noqa: S603 - our probe, fixed arguments
        [sys.executable, "-c", _RSS_PROBE, str(REPO), str(path), kind], capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rss, outcome = out.stdout.strip().split(" ", 1)
    return int(rss), outcome


@pytest.mark.fault_scenario("hostile input", "2 GB sparse files and a 10 MB line: bounded memory")
def test_huge_files_stream_in_bounded_memory(fault: FaultRecord) -> None:
    root = traversable_tmpdir("movierec-fault-huge-")
    cases = {}
    bare = root / "bare.csv"  # 2 GB of NUL bytes
    with open(bare, "wb") as f:
        f.truncate(2 * GB)
    headed = root / "ratings.csv"  # a valid header, then a 2 GB "line" of NUL bytes
    with open(headed, "wb") as f:
        f.write(b"userId,movieId,rating,timestamp\n1,2,3.0,4\n")
        f.truncate(2 * GB)
    movies_dir = root / "ml"
    movies_dir.mkdir()
    (movies_dir / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with open(movies_dir / "movies.csv", "wb") as f:
        f.truncate(2 * GB)
    long_line = root / "long.csv"
    long_line.write_bytes(b"userId,movieId,rating,timestamp\n1,2,3.0,4\n" + b"7" * (10 * 1024 * 1024) + b"\n5,6,4.5,7\n")
    cases["2 GB of NUL bytes"] = (_probe(bare, "ratings"), "refused: bare.csv: not a ratings CSV")
    cases["header + 2 GB line"] = (_probe(headed, "ratings"), "good=1 rejected=1 line too long")
    cases["2 GB movies.csv"] = (_probe(movies_dir, "movies"), "refused:")
    cases["10 MB line"] = (_probe(long_line, "ratings"), "good=2 rejected=1 line too long")
    for name, ((rss, outcome), expected) in cases.items():
        fault.tried += 1
        assert outcome.startswith(expected), (name, outcome)
        assert rss < RSS_LIMIT, f"{name}: peak RSS {rss / GB:.2f} GB"
        fault.survived += 1
        fault.note(f"{name}: peak RSS {rss / 2**20:.0f} MB, {outcome[:60]}")


@pytest.mark.fault_scenario("hostile input", "MovieLens directories: SQL and CSV injection in every text field")
def test_hostile_movielens_directory(pg_url: str, fault: FaultRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec_assets.assets.ingest import raw_movies
    from movierec_assets.resources.database import PostgresResource

    monkeypatch.setenv("MOVIEREC_HOME", str(traversable_tmpdir("movierec-fault-home-")))
    data = traversable_tmpdir("movierec-fault-ml-")
    titles = [f'"{CSV_INJECTION} (1999)"', f'"{SQL.replace(chr(34), "")} (2001)"', '"Robert\'); DROP TABLE x;--"']
    (data / "movies.csv").write_text(
        "movieId,title,genres\n"
        f"960001,{titles[0]},Comedy|{SQL}\n960002,{titles[1]},{CSV_INJECTION}\n960003,{titles[2]},Drama\n"
    )
    (data / "tags.csv").write_text(f"userId,movieId,tag,timestamp\n1,960001,{SQL},1000\n2,960002,\"{CSV_INJECTION}\",1001\n")
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,960001,4.0,1000\n")
    run = {"ops": {"raw_movies": {"config": {"data_dir": str(data)}}}}
    resources = {"postgres": PostgresResource()}
    assert dg.materialize([raw_movies], resources=resources, run_config=run).success
    fault.tried += 5
    with connect(pg_url) as conn:
        movies = dict(conn.execute("SELECT movie_id, title FROM movielens.movies WHERE movie_id >= 960001").fetchall())
        genres = conn.execute("SELECT genres FROM movielens.movies WHERE movie_id = 960001").fetchone()[0]
        tags = sorted(r[0] for r in conn.execute("SELECT tag FROM movielens.tags WHERE movie_id >= 960001"))
        assert conn.execute("SELECT to_regclass('movielens.ratings') IS NOT NULL").fetchone()[0]
    assert movies[960001] == f"{CSV_INJECTION} (1999)" and SQL.replace('"', "") in movies[960002]  # verbatim text
    assert genres == ["Comedy", SQL] and tags == sorted([SQL, CSV_INJECTION])
    fault.survived += 5
    # Broken directories fail with a message naming the file; the previous movies stay.
    broken = {
        "non-UTF-8 movies.csv": b"movieId,title,genres\n1,Caf\xe9 (1999),Drama\n",
        "wrong columns": b"id,name,kinds\n1,x,y\n",
        "empty movies.csv": b"",
        "NUL bytes": b"movieId,title,genres\n1,A\x00B (1999),Drama\n",
    }
    for name, content in broken.items():
        fault.tried += 1
        (data / "movies.csv").write_bytes(content)
        result = dg.materialize([raw_movies], resources=resources, run_config=run, raise_on_error=False)
        failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert not result.success and failure, name
        message = failure[0].event_specific_data.error.message  # type: ignore[union-attr]
        assert "movies.csv" in message and "Traceback" not in message, (name, message)
        with connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM movielens.movies WHERE movie_id >= 960001").fetchone()[0] == 3
        fault.survived += 1


@pytest.mark.fault_scenario("hostile input", "API parameters: SQL, NUL, huge and non-ASCII numbers")
def test_hostile_api_parameters_never_5xx(fault: FaultRecord) -> None:
    world = make_world()
    hostile = [
        f"/users/{SQL}/recommendations", "/users/1%00/recommendations", "/users/" + "9" * 5000 + "/recommendations",
        "/users/١٢/recommendations", "/users/1e3/recommendations", "/users/NaN/recommendations",
        "/users/1/recommendations?n=NaN", "/users/1/recommendations?n=1e309", "/users/1/recommendations?n=" + SQL,
        "/users/1/recommendations?n=" + "1" * 10000, "/users/2147483648/recommendations", "/movies/%2e%2e/similar",
        f"/movies/{CSV_INJECTION}/similar", "/movies/0x10/similar", "/movies/-0/similar?n=-0",
    ]
    with TestClient(create_app(world.recommender)) as client:
        for path in hostile:
            fault.tried += 1
            status = client.get(path).status_code
            assert status in (404, 422), (path[:80], status)
            fault.survived += 1
        assert client.get("/users/1/recommendations?n=3").status_code == 200  # still serving
