"""The real dev stack for the UI tests: a private MOVIEREC_HOME, the embedded PostgreSQL, the demo's
runs in the Dagster instance, then `movierec dev` (webserver + daemon) on 127.0.0.1, and a headless
Debian Chromium driven by Playwright (never a browser Playwright downloads itself)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from movierec_assets_tests.conftest import traversable_tmpdir

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "img"
DEMO_DAYS = 3
DEMO_EPOCHS = 3  # the UI shows the same screens after 3 epochs as after 20, in a fraction of the time
STARTUP_SECONDS = 300  # hang guards, generous: a busy 2-core machine is slow, not broken
DEMO_SECONDS = 900
# The stack's log outlives the temp home, for a post-mortem after a failed run.
LAST_LOG = Path(tempfile.gettempdir()) / "movierec-e2e-last.log"


@dataclass
class DevStack:
    home: Path
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    demo_output: str = ""
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = httpx.post(f"{self.base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def note(self, message: str) -> None:
        with self.log.open("a") as log:
            log.write(f"[e2e {time.strftime('%H:%M:%S')}] {message}\n")

    def log_tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    def run_cli(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed argv
            [*movierec_cmd(), *args], env=self.env, cwd=self.home, capture_output=True, text=True,
            timeout=timeout, check=False,
        )


def movierec_cmd() -> list[str]:
    """The installed `movierec` console script beside this interpreter (else the same via -c)."""
    script = Path(sys.executable).parent / "movierec"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from movierec_assets.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_signals() -> None:
    # A background shell starts children with SIGINT ignored, and dagster dev maps SIGTERM onto
    # SIGINT's handler: restore both so a clean shutdown signal is honoured.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "DAGSTER_"))}
    env.update({"MOVIEREC_HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    return env


def wait_until_ready(stack: DevStack, deadline: float) -> None:
    """/server_info answers, and the code location has loaded (or fail with its error)."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    while time.monotonic() < deadline:
        assert stack.proc is not None
        if stack.proc.poll() is not None:
            raise AssertionError(f"movierec dev exited with {stack.proc.returncode}:\n{stack.log_tail()}")
        try:
            if httpx.get(f"{stack.base}/server_info", timeout=5).status_code == 200:
                entries = stack.gql(query)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e["locationOrLoadError"] for e in entries
                              if e["locationOrLoadError"]["__typename"] == "PythonError"]
                    assert not errors, f"code location failed to load: {errors}"
                    return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not come up in {STARTUP_SECONDS} s (log: {LAST_LOG}):\n{stack.log_tail()}")


def _session_members(leader: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == leader:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def stop_stack(stack: DevStack) -> None:
    """Ctrl-C for the whole `movierec dev` session (webserver, daemon, code server, run workers),
    then kill stragglers, then stop the embedded PostgreSQL (pg_ctl runs it in its own session)."""
    from movierec_assets.config import Paths
    from movierec_assets.db.embedded import EmbeddedPostgres

    if stack.proc is not None:
        leader = stack.proc.pid
        members = _session_members(leader)
        if stack.proc.poll() is None:
            stack.note(f"Ctrl-C to the movierec dev session ({len(members)} processes)")
            os.killpg(leader, signal.SIGINT)
            try:
                stack.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                pass
        alive = [p for p in members + _session_members(leader) if p.is_running()]
        stack.note(f"movierec dev exited ({stack.proc.returncode}); {len(alive)} stragglers to terminate")
        for proc in alive:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, still = psutil.wait_procs(alive, timeout=10)
        for proc in still:
            try:
                proc.kill()
            except psutil.Error:
                pass
    old = os.environ.get("MOVIEREC_HOME")
    try:
        os.environ["MOVIEREC_HOME"] = str(stack.home)
        EmbeddedPostgres(Paths(stack.home)).stop()
    finally:
        if old is None:
            os.environ.pop("MOVIEREC_HOME", None)
        else:
            os.environ["MOVIEREC_HOME"] = old


ASSET_NODES = """{ assetNodes { assetKey { path } groupName isPartitioned hasAssetChecks isExecutable
    dependencyKeys { path } dependedByKeys { path } } }"""


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevStack]:
    """The demo's runs in a fresh instance, then `movierec dev` serving them on a free port."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium); the UI tests need Debian's Chromium")
    home = traversable_tmpdir("movierec-e2e-")
    stack = DevStack(home=home, port=free_port(), env=stack_env(home), log=home / "dev.log")
    try:
        stack.note(f"movierec demo --days {DEMO_DAYS} --epochs {DEMO_EPOCHS}")
        demo = stack.run_cli("demo", "--days", str(DEMO_DAYS), "--epochs", str(DEMO_EPOCHS), timeout=DEMO_SECONDS)
        stack.demo_output = demo.stdout + demo.stderr
        with stack.log.open("a") as log:
            log.write(stack.demo_output)
        assert demo.returncode == 0, f"movierec demo failed:\n{stack.demo_output[-4000:]}"
        stack.note(f"movierec dev --port {stack.port}")
        with stack.log.open("ab") as log:
            stack.proc = subprocess.Popen(  # noqa: S603 - fixed argv
                [*movierec_cmd(), "dev", "--port", str(stack.port)], env=stack.env, cwd=home,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_signals,
            )
        wait_until_ready(stack, time.monotonic() + STARTUP_SECONDS)
        stack.note("the UI answers and the code location is loaded")
        stack.gql("mutation { setNuxSeen }")  # the one-time community pop-up would cover the page
        nodes = stack.gql(ASSET_NODES)["assetNodes"]
        # Only the assets this location defines: not the stubs Dagster draws for deps nobody defines yet.
        stack.assets = {"/".join(n["assetKey"]["path"]): n for n in nodes if n["isExecutable"]}
        yield stack
    finally:
        stop_stack(stack)
        stack.note("stopped")
        shutil.copyfile(stack.log, LAST_LOG)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(dev_stack: DevStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: Any, dev_stack: DevStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dev_stack.base)
    context.set_default_timeout(45_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()
