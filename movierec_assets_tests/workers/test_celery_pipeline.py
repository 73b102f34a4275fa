"""The whole asset graph through 2 real dagster-celery workers (a real Redis, the embedded
PostgreSQL) gives exactly what an in-process run of the same data gives.

Both runs materialize every unpartitioned asset (pipeline_job, with the champion gate), then 3 daily
partitions, each into its own database on one server. Then:
- every table has the same row count;
- the ratings and the feature tables are equal bit for bit (every row's text, float8 exact);
- the Celery run registered its model, and the gate decided on it;
- the same model file gives the same top 10 for every user (movies and order exact, scores within 1e-6);
- every step ran on a worker: the event log names the worker and the PID of the process.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec_assets.db.connect import connect
from movierec_assets.movielens.synth import write_synthetic
from movierec_assets.workers.runs import step_workers
from movierec_assets_tests.conftest import traversable_tmpdir
from movierec_assets_tests.workers.conftest import require_redis_server
from movierec_assets_tests.workers.support import Stack, open_stack, row_counts, run_everything, table_digest

# dagster-celery defines its task again for every step it submits; Celery keeps the first (harmless).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Task name .execute_plan. is already registered")]

RATINGS = 20_000
DAYS = 3
WORKERS = 2
# Tables whose rows are a pure function of the data (timestamps of the run excluded).
EXACT_TABLES = {"movielens.movies": (), "movielens.ratings": (), "movielens.rejected_ratings": ("id", "rejected_at"),
                "features.user_features": (), "features.movie_features": (),
                "features.scaling_stats": ("computed_at",)}


@pytest.fixture(scope="module")
def runs() -> Iterator[tuple[Stack, dict[str, list]]]:
    require_redis_server()
    home = traversable_tmpdir("movierec-celery-")
    dataset = home / "datasets" / "tiny"
    write_synthetic(dataset, n_ratings=RATINGS, seed=11)
    stack = open_stack(home, dataset, DAYS)
    try:
        inprocess = run_everything(stack.use("inprocess"), stack.days, distributed=False)
        stack.start_workers(WORKERS)
        instance = stack.use("celery")
        celery = run_everything(instance, stack.days, distributed=True)
        yield stack, {"inprocess": inprocess, "celery": celery, "instance": instance}
    finally:
        stack.close()
        shutil.rmtree(home, ignore_errors=True)


def test_every_run_succeeds_through_the_workers(runs: tuple[Stack, dict]) -> None:
    stack, result = runs
    for mode in ("inprocess", "celery"):
        failed = [r.failure for r in result[mode] if not r.success]
        assert not failed, f"{mode}: {failed[0][:3000]}"
    assert len(stack.days) == DAYS and len(result["celery"]) == 1 + DAYS
    assert set(result["celery"][0].steps) >= {"raw_movies", "raw_ratings", "feature_tables", "scaling_stats",
                                              "trained_model", "movie_embeddings", "user_recommendations"}


def test_steps_ran_on_the_workers(runs: tuple[Stack, dict]) -> None:
    stack, result = runs
    assert stack.pool is not None
    workers = {w.name: w for w in stack.pool.workers()}
    assert len(workers) == WORKERS
    seen: dict[str, set[int]] = {}
    for run in result["celery"]:
        placed = step_workers(result["instance"], run.run_id)
        assert set(placed) == set(run.steps), (placed, run.steps)  # every step, none in this process
        for step, (node, pid) in placed.items():
            name = node.split("@", 1)[0]
            assert name in workers, f"{step} ran on {node!r}"
            assert pid and pid not in (w.pid for w in workers.values())  # a pool process, not the main one
            seen.setdefault(name, set()).add(pid)
    assert set(seen) <= set(workers) and seen, seen


def test_same_row_counts_and_bit_equal_data(runs: tuple[Stack, dict]) -> None:
    stack, _ = runs
    counts = {mode: row_counts(url) for mode, url in stack.urls.items()}
    assert counts["celery"] == counts["inprocess"]
    assert counts["celery"]["movielens.ratings"] > 0 and counts["celery"]["features.user_features"] > 0
    with connect(stack.urls["celery"]) as conn:
        days = conn.execute("SELECT count(DISTINCT partition_day) FROM movielens.ratings "
                            "WHERE partition_day IS NOT NULL").fetchone()[0]
    assert days == DAYS
    for table, exclude in EXACT_TABLES.items():
        digests = {mode: table_digest(url, table, exclude) for mode, url in stack.urls.items()}
        assert digests["celery"] == digests["inprocess"], table


def test_a_registered_gated_model_with_the_same_top_10(runs: tuple[Stack, dict]) -> None:
    """Training is not bit-reproducible across processes (TensorFlow's thread pools sum in any
    order), so, as the issue asks, the top 10 are compared given the same model file: the
    in-process run's model is served from the Celery run's (bit-equal) tables."""
    from movierec_assets.serving.offline.batch import embed_champion, recommend_all

    stack, _ = runs
    folders = {}
    for mode, url in stack.urls.items():
        with connect(url) as conn:
            versions = conn.execute("SELECT version, status, reason, path FROM ml.model_versions").fetchall()
        assert len(versions) == 1 and versions[0][1] == "champion" and versions[0][2], versions
        folders[mode] = Path(versions[0][3])
        assert folders[mode].is_dir()
    shutil.copytree(folders["inprocess"], folders["celery"], dirs_exist_ok=True)
    embed_champion(stack.urls["celery"], force=True)
    recommend_all(stack.urls["celery"], force=True)
    tops = {mode: _top_10(url) for mode, url in stack.urls.items()}
    assert len(tops["inprocess"]) > 0
    assert [r[:3] for r in tops["celery"]] == [r[:3] for r in tops["inprocess"]]  # users, ranks, movies
    assert max(abs(a[3] - b[3]) for a, b in zip(tops["celery"], tops["inprocess"], strict=True)) <= 1e-6


def _top_10(url: str) -> list[tuple[int, int, int, float]]:
    with connect(url) as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT user_id, rank, movie_id, score FROM ml.user_recommendations ORDER BY user_id, rank").fetchall()]
