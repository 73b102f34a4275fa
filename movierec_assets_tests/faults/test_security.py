"""Security review as tests: credentials never leak, servers bind to loopback, models load only in
safe mode, and SQL is never built from data by string formatting (see docs/security.md)."""

from __future__ import annotations

import ast
import socket
import textwrap
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psutil
import pytest
from click.testing import CliRunner
from dagster._serdes import serialize_value

from movierec_assets.db.connect import connect
from movierec_assets.db.embedded import SERVER_SETTINGS
from movierec_assets.partitions import DayRange
from movierec_assets.resources import retry
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.faults.conftest import FaultRecord
from movierec_assets_tests.faults.sql_audit import _Auditor, _module_constants, audit_model_loading, audit_sql
from movierec_assets_tests.faults.support import REPO, clear_day, ensure_movies, write_day_file
from movierec_assets_tests.ingest.days_support import materialize_days, tiny_asset

pytestmark = pytest.mark.faults

PACKAGE = REPO / "movierec_assets"
DAY = date(1988, 11, 2)
DAYS = DayRange(date(1988, 11, 1), date(1988, 11, 30), "faults-security")

# Built SQL strings the audit cannot prove safe, each checked by hand. Keep this list short.
SQL_ALLOWLIST = {
    # Re-creates the table's own keys after the bulk load; `definition` is pg_get_constraintdef()
    # output for constraints that already exist in the catalog, never input data.
    ("movierec_assets/ingest/load.py", "_create_ddl"),
    # `maintenance_work_mem` is matched against ^\d+(kB|MB|GB)$ two lines above (ValueError otherwise).
    ("movierec_assets/ingest/load.py", "_set_local"),
    # SET TRANSACTION SNAPSHOT takes no bind parameters; the id comes from pg_export_snapshot() on the
    # first connection and is matched against a hex-and-dashes pattern before use.
    ("movierec_assets/features/store.py", "_share_snapshot"),
}


def _events_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Everything the UI can show about a run: its event log (messages, metadata, errors), config, tags."""
    run = instance.get_run_by_id(run_id)
    parts = [serialize_value(entry) for entry in instance.all_logs(run_id)]
    parts.append(serialize_value(run))
    return "\n".join(parts)


@pytest.mark.fault_scenario("security", "no credentials in event logs, metadata, errors or CLI output")
def test_no_credentials_in_logs_metadata_or_cli(pg_url: str, fault: FaultRecord, capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    password = urlsplit(pg_url).password
    assert password and len(password) >= 16
    ensure_movies(pg_url)
    clear_day(pg_url, DAY)
    landing = traversable_tmpdir("movierec-fault-landing-")
    monkeypatch.setenv("MOVIEREC_LANDING_DIR", str(landing))
    write_day_file(landing, DAY, 300, seed=4, bad=2)
    instance = dg.DagsterInstance.ephemeral()
    asset = tiny_asset(DAYS)
    runs = {
        "day loaded": materialize_days(asset, DAY, instance=instance),
        "day file missing": materialize_days(asset, date(1988, 11, 3), instance=instance, raise_on_error=False),
    }
    # The server is unreachable: the failure message must name it without the password. (No wait
    # between the retries, which would only add 15 s here.)
    monkeypatch.setattr(retry, "WAIT_SECONDS", 0.0)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", pg_url.replace(f":{urlsplit(pg_url).port}/", ":9/"))
    runs["database unreachable"] = materialize_days(tiny_asset(DAYS), DAY, instance=instance, raise_on_error=False)
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", pg_url)
    assert runs["day loaded"].success and not runs["day file missing"].success
    assert not runs["database unreachable"].success
    unreachable = _events_text(instance, runs["database unreachable"].run_id)
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/movierec" in unreachable
    for name, result in runs.items():
        fault.tried += 1
        text = _events_text(instance, result.run_id)
        assert password not in text, f"{name}: the password is in the run's events"
        fault.survived += 1
    from movierec_assets.cli import main

    cli = CliRunner()
    fault.tried += 2
    out = cli.invoke(main, ["db", "url"], env={"MOVIEREC_DATABASE_URL": pg_url})
    assert out.exit_code == 0 and password not in out.output and ":***@127.0.0.1" in out.output
    status = cli.invoke(main, ["db", "status"], env={"MOVIEREC_DATABASE_URL": pg_url})
    assert password not in status.output
    shown = cli.invoke(main, ["db", "url", "--show-password"], env={"MOVIEREC_DATABASE_URL": pg_url})
    assert password in shown.output  # only on explicit request
    captured = capfd.readouterr()
    assert password not in captured.out + captured.err, "the password reached stdout/stderr (logs)"
    fault.survived += 2
    clear_day(pg_url, DAY)


@pytest.mark.fault_scenario("security", "servers listen on 127.0.0.1 by default")
def test_servers_bind_to_loopback_by_default(pg_url: str, fault: FaultRecord) -> None:
    from movierec_assets.cli.dev import dev
    from movierec_assets.cli.serve import serve

    fault.tried += 4
    assert SERVER_SETTINGS["listen_addresses"] == "127.0.0.1"
    with connect(pg_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    port = urlsplit(pg_url).port
    assert port is not None
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for address in others:  # the embedded server is unreachable from any other interface
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((address, port)) != 0, f"PostgreSQL answers on {address}:{port}"
    for command in (serve, dev):
        host = next(p for p in command.params if p.name == "host")
        assert host.default == "127.0.0.1", command.name
    source = (PACKAGE / "cli" / "dev.py").read_text()
    assert '"-h", host' in source  # dagster dev gets the host explicitly (its own default differs)
    fault.survived += 4
    fault.note(f"checked {len(others)} non-loopback interface address(es)")


@pytest.mark.fault_scenario("security", "models load only with safe_mode=True (AST over the package)")
def test_models_load_only_in_safe_mode(fault: FaultRecord) -> None:
    findings, calls = audit_model_loading(PACKAGE)
    fault.tried += calls
    assert calls >= 2, "the audit found no keras load_model calls: it is not looking at the code"
    assert findings == [], findings
    fault.survived += calls
    # The audit does catch an unsafe load.
    bad = Path(traversable_tmpdir("movierec-fault-ast-")) / "pkg"
    bad.mkdir()
    (bad / "m.py").write_text("import keras\nm = keras.saving.load_model('x.keras')\nn = keras.models.load_model("
                              "'y', safe_mode=False)\n")
    assert len(audit_model_loading(bad)[0]) == 3


@pytest.mark.fault_scenario("security", "SQL never built from data by string formatting (AST over the package)")
def test_sql_is_never_formatted_from_data(fault: FaultRecord) -> None:
    findings, sites = audit_sql(PACKAGE)
    fault.tried += sites
    assert sites >= 5, "the audit found no built SQL: it is not looking at the code"
    unexpected = [f for f in findings if (f.path, f.function) not in SQL_ALLOWLIST]
    assert unexpected == [], "\n".join(f"{f.path}:{f.line} {f.function}: {f.detail}" for f in unexpected)
    stale = SQL_ALLOWLIST - {(f.path, f.function) for f in findings}
    assert not stale, f"allowlist entries that no longer match anything: {stale}"
    fault.survived += sites
    fault.note(f"{sites} built SQL strings checked, {len(findings)} allowlisted")


def test_sql_audit_flags_formatted_data() -> None:
    """The rule is precise both ways: data in an f-string is flagged, quoted identifiers are not."""
    code = textwrap.dedent('''
        TABLE = "movielens.ratings"
        def bad(conn, user_input, rows):
            conn.execute(f"SELECT * FROM t WHERE title = '{user_input}'")
            conn.execute("DELETE FROM t WHERE id = %s" % user_input)
            sql = "SELECT {} FROM t".format(user_input)
            conn.execute(sql)
            for r in rows:
                conn.execute(f"SELECT {r}")
        def good(conn, schema, name, n):
            rel = qualified(schema, name)
            conn.execute(f"SELECT count(*) FROM {TABLE}")
            conn.execute(f"TRUNCATE {rel}")
            conn.execute(f"SELECT * FROM {quote_ident(name)} LIMIT {int(n)}")
            conn.execute("SELECT * FROM t WHERE id = %s", (name,))
    ''')
    tree = ast.parse(code)
    auditor = _Auditor("example.py", _module_constants(tree))
    auditor.visit(tree)
    assert sorted((f.function, f.line) for f in auditor.findings) == [("bad", 4), ("bad", 5), ("bad", 7), ("bad", 9)]
