"""Render the fault table ("faults tried / survived / data lost") from the last fault-test run.

    python -m benchmarks.faults_report [--json benchmarks/results/faults.json]

The JSON is written by movierec_assets_tests/faults/conftest.py at the end of every run of the
fault tests (`pytest -m faults`); each scenario keeps the result of the latest run that included it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "results" / "faults.json"


def render(payload: dict) -> str:
    """A Markdown table, one row per scenario, then per-category totals."""
    rows = payload.get("scenarios", [])
    lines = [
        f"Fault tests, run {payload.get('updated_at', '?')} ({payload.get('machine', '?')}):",
        "",
        "| category | scenario | faults tried | survived | data lost | result |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['category']} | {r['scenario']} | {r['tried']} | {r['survived']} | "
                     f"{r['data_lost']} | {r['outcome']} |")
    totals: dict[str, list[int]] = {}
    for r in rows:
        t = totals.setdefault(r["category"], [0, 0, 0])
        t[0] += r["tried"]
        t[1] += r["survived"]
        t[2] += r["data_lost"]
    lines += ["", "| category | faults tried | survived | data lost |", "|---|---:|---:|---:|"]
    for cat, (tried, survived, lost) in totals.items():
        lines.append(f"| {cat} | {tried} | {survived} | {lost} |")
    all_t = [sum(t[i] for t in totals.values()) for i in range(3)]
    lines.append(f"| **all** | **{all_t[0]}** | **{all_t[1]}** | **{all_t[2]}** |")
    failed = [r for r in rows if r["outcome"] != "passed"]
    if failed:
        lines += ["", "Not passing: " + "; ".join(f"{r['scenario']} ({r['outcome']})" for r in failed)]
    notes = [(r["scenario"], n) for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:"] + [f"- {s}: {n}" for s, n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT, help="results file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.json.exists():
        print(f"{args.json} does not exist: run `pytest -m faults` first", file=sys.stderr)
        return 1
    print(render(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
