"""`benchmarks.bench_continual` end to end on a tiny hand-made dataset: 2 days under `none` and
`full`, each policy through the real assets in its own process (own home and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from benchmarks.bench_continual import main
from movierec_assets.movielens.source import read_ratings
from movierec_assets.movielens.split import compute_split
from movierec_assets_tests.ml.tiny_movielens import write_tiny_movielens

POLICIES = ["none", "full"]
DAYS = 2


def _known_events(data: Path) -> tuple[list[str], dict[str, int]]:
    """The first DAYS future days, and per day the events of users who rated before it."""
    ratings = read_ratings(data)
    days = compute_split(ratings.lazy()).future_days()[:DAYS]
    first = ratings.group_by("user_id").agg(pl.col("rated_at").min().dt.date().alias("first"))
    counts = {}
    for day in days:
        events = ratings.filter(pl.col("rated_at").dt.date() == day).join(first, on="user_id")
        counts[day.isoformat()] = events.filter(pl.col("first") < day).height
    return [d.isoformat() for d in days], counts


def test_two_days_two_policies(tmp_path: Path) -> None:
    data = write_tiny_movielens(tmp_path / "tiny", n_users=30, n_movies=40, per_user=20, days=30)
    out, png = tmp_path / "continual.json", tmp_path / "continual.png"
    main(["--data", str(data), "--days", str(DAYS), "--policies", ",".join(POLICIES), "--epochs", "1",
          "--json", str(out), "--png", str(png)])
    result = json.loads(out.read_text())
    rows, runs = result["rows"], {r["policy"]: r for r in result["runs"]}
    days, known = _known_events(data)

    # One row per day per policy, in day order, the split's first future days.
    assert [(r["policy"], r["day"]) for r in rows] == [(p, d) for p in POLICIES for d in days]
    assert {r["day"]: r["known_events"] for r in rows if r["policy"] == "none"} == known
    assert [r["known_events"] for r in rows if r["policy"] == "full"] == [known[d] for d in days]

    # No day ever serves a model the gate rejected, before or after the day's update.
    for r in rows:
        rejected = set(runs[r["policy"]]["rejected_versions"])
        assert r["served_version"] not in rejected and r["served_after"] not in rejected
        assert r["served_rejected"] is False

    # `none` never trains: the initial model is served throughout.
    none = [r for r in rows if r["policy"] == "none"]
    assert {r["served_version"] for r in none} | {r["served_after"] for r in none} == {runs["none"]["initial_version"]}
    assert all(r["candidate"] is None and r["gate"] is None and r["train_cpu_seconds"] == 0 for r in none)

    # `full` trains a candidate every day; the gate decides it, and the served model follows the decision.
    full = [r for r in rows if r["policy"] == "full"]
    assert len({r["candidate"] for r in full}) == DAYS
    for r in full:
        assert r["gate"] in ("promoted", "rejected") and r["train_cpu_seconds"] > 0 and r["train_peak_rss_mb"] > 0
        assert (r["served_after"] == r["candidate"]) == (r["gate"] == "promoted")
    assert full[1]["served_version"] == full[0]["served_after"]  # the next day is scored by what was served

    summary = result["summary"]
    assert [p["policy"] for p in summary["policies"]] == POLICIES
    assert summary["invariants"] == {"never_served_a_rejected_model": True, "none_kept_its_initial_model": True}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
