"""Fault tests: every test is marked `faults`, and each records its scenario's outcome.

A test asks for the `fault` fixture and counts what it did (`fault.tried += 1` per injected fault,
`fault.survived += 1` once the promise was checked after it, `fault.data_lost += n` for rows found
lost, duplicated or half-written). At the end of the session the records are merged by scenario
into `benchmarks/results/faults.json`; `python -m benchmarks.faults_report` renders the table.
A test that fails is recorded as failed, with what it had counted so far.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "faults.json"
_RECORDS_KEY = pytest.StashKey[dict[str, "FaultRecord"]]()


@dataclass
class FaultRecord:
    category: str
    scenario: str
    tried: int = 0
    survived: int = 0
    data_lost: int = 0
    notes: list[str] = field(default_factory=list)
    outcome: str = "not run"
    seconds: float = 0.0
    test: str = ""

    def note(self, text: str) -> None:
        self.notes.append(text)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault_scenario(category, scenario): the fault table row a test fills")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[FaultRecord]:
    """The outcome record of this test's fault scenario (category and scenario from the marker)."""
    marker = request.node.get_closest_marker("fault_scenario")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: add @pytest.mark.fault_scenario(category, scenario)")
    category, scenario = marker.args
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None:
        scenario = f"{scenario} [{callspec.id}]"
    record = FaultRecord(category, scenario, test=request.node.nodeid)
    request.node.stash[_RECORDS_KEY] = {"r": record}
    started = time.perf_counter()
    yield record
    record.seconds = round(time.perf_counter() - started, 2)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    records = item.stash.get(_RECORDS_KEY, None)
    if records is not None and report.when in ("setup", "call", "teardown"):
        record = records["r"]
        if report.failed:
            record.outcome = "failed"
            record.note(f"{report.when} failed: {str(report.longrepr).strip().splitlines()[-1][:300]}")
        elif report.skipped and record.outcome == "not run":
            record.outcome = "skipped"
        elif report.when == "call" and report.passed:
            record.outcome = "passed"
        if report.when == "teardown":
            item.session.stash.setdefault(_RECORDS_KEY, {})[item.nodeid] = record
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    records = session.stash.get(_RECORDS_KEY, {})
    if not records:
        return
    old: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            old = json.loads(RESULTS.read_text())
        except ValueError:
            old = {}
    # Keep other tests' latest results; drop old rows of the tests run now (renamed scenarios).
    ran = {r.test for r in records.values()}
    scenarios = {s["scenario"]: s for s in old.get("scenarios", []) if s.get("test") not in ran}
    for record in records.values():
        scenarios[record.scenario] = asdict(record)
    payload = {
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
        "scenarios": sorted(scenarios.values(), key=lambda s: (s["category"], s["scenario"])),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(RESULTS)
