"""The embedded server's lifecycle: as root (CI) and as an unprivileged user, reuse, external URLs."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from movierec_assets.config import Paths
from movierec_assets.db.connect import DatabaseUnavailable, connect, database_url
from movierec_assets.db.embedded import EmbeddedPostgres
from movierec_assets.db.migrations import apply_migrations
from movierec_assets.db.url import redact, redact_text
from movierec_assets_tests.conftest import traversable_tmpdir


def test_session_server_is_real_postgres_18(pg_url: str) -> None:
    with connect(pg_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    assert int(version) >= 180000
    assert listen == "127.0.0.1"
    assert {"movielens", "features", "ml"} <= schemas


def test_lifecycle_start_reuse_stop_restart() -> None:
    home = traversable_tmpdir("movierec-life-")
    try:
        server = EmbeddedPostgres(Paths(home))
        url = server.ensure_running()
        if os.geteuid() == 0:
            owner = pwd.getpwuid((home / "pg" / "data").stat().st_uid).pw_name
            assert owner == "nobody"
        # A second process reuses the running server instead of starting another.
        code = "from movierec_assets.db.embedded import EmbeddedPostgres as E; print(E().ensure_running())"
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "MOVIEREC_HOME": str(home)},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        assert out == url
        assert server.status()["running"] is True
        assert server.stop() is True
        assert server.running_state() is None
        with pytest.raises(DatabaseUnavailable, match=r"cannot connect.*\*\*\*|cannot connect"):
            with connect(url):
                pass
        url2 = server.ensure_running()  # init happens once: the restart keeps the data
        with connect(url2) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _as_nobody(python: str, code: str, env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", code], env=env, capture_output=True, text=True,
        user=65534, group=65534, extra_groups=[], cwd=cwd, timeout=120,
    )


def _interpreters() -> list[str]:
    """This interpreter, then every `pythonX.Y` of the same version on PATH (distinct files):
    candidates for one an unprivileged user can run (one installed under a root-only home is not)."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = [sys.executable, os.path.realpath(sys.executable)]
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found.append(shutil.which(name, path=folder) or "")
    unique: dict[str, str] = {}
    for path in found:
        if path and os.path.realpath(path) not in unique:
            unique[os.path.realpath(path)] = path
    return list(unique.values())


def _nobody_python(env: dict[str, str], cwd: str) -> tuple[str | None, str]:
    """The first candidate interpreter with which `nobody` imports this checkout, and the last error."""
    error = "no interpreter found"
    for python in _interpreters():
        try:
            probe = _as_nobody(python, "import psycopg, movierec_assets.db.embedded", env, cwd)
        except OSError as exc:  # not executable by nobody
            error = str(exc)
            continue
        if probe.returncode == 0:
            return python, ""
        error = probe.stderr[-200:]
    return None, error


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_lifecycle_as_non_root_user() -> None:
    """The same wrapper run by an ordinary user starts postgres as that user, with no user switch."""
    import site

    home = traversable_tmpdir("movierec-nonroot-")
    os.chown(home, 65534, 65534)
    repo = str(Path(__file__).resolve().parents[2])
    env = {"MOVIEREC_HOME": str(home), "HOME": str(home), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.pathsep.join([repo, *site.getsitepackages()])}
    python, error = _nobody_python(env, str(home))
    if python is None:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"an unprivileged user cannot reach this checkout's Python: {error}")
    code = (
        "from movierec_assets.db.embedded import EmbeddedPostgres as E; import psycopg;"
        "s=E(); u=s.ensure_running();"
        "c=psycopg.connect(u); print(c.execute('select current_user').fetchone()[0]); c.close();"
        "print(s.os_user); s.stop()"
    )
    proc = _as_nobody(python, code, env, str(home))
    shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["movierec", "None"]


def test_external_url_is_honoured(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", pg_url)
    monkeypatch.setenv("MOVIEREC_HOME", "/nonexistent/never-used")
    assert database_url() == pg_url


def test_external_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "mysql://u:secret@h/db")
    with pytest.raises(ValueError) as err:
        database_url()
    assert "secret" not in str(err.value)


def test_migrations_applied_twice_change_nothing(pg_url: str) -> None:
    def snapshot() -> list[tuple[object, ...]]:
        with connect(pg_url) as conn:
            return conn.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema IN ('movielens','features','ml') ORDER BY 1,2,3"
            ).fetchall()

    before = snapshot()
    assert apply_migrations(pg_url) == []
    assert snapshot() == before
    with connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions and versions[0] == "001_movielens.sql"


def test_rating_check_constraint(pg_url: str) -> None:
    with connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO movielens.ratings (user_id, movie_id, rating, rated_at) VALUES (1, 1, 4.25, now())"
        )


def test_redaction() -> None:
    url = "postgresql://movierec:s3cr%21t@127.0.0.1:5432/movierec"
    assert "s3cr" not in redact(url)
    assert redact(url).startswith("postgresql://movierec:***@")
    assert "s3cr" not in redact_text(f"could not connect to {url}: refused")
