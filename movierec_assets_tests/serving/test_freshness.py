"""Freshness in the UI: the serving assets carry a time-window `dg.FreshnessPolicy`, and Dagster's own
freshness evaluation (the daemon's per-asset step, run here in process) reports a stale asset as
FAIL, a late one as WARN and a fresh one as PASS, in the freshness state records the UI reads.

The daemon loop itself (`FreshnessDaemon.run_iteration`) needs a workspace of code servers; its
per-asset step `_evaluate_asset` is exactly what each iteration runs for every asset node.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.loader import LoadingContextForTest
from dagster._daemon.freshness import FreshnessDaemon

from movierec_assets.assets.serving import FRESH_WITHIN, LATE_AFTER, SERVING_FRESHNESS

SERVING = [dg.AssetKey("movie_embeddings"), dg.AssetKey("user_recommendations")]


def _definitions() -> dg.Definitions:
    from movierec_assets import defs

    return defs()


def test_the_serving_assets_carry_the_26_hour_policy() -> None:
    defs = _definitions()
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in SERVING:
        policy = graph.get(key).freshness_policy
        assert policy == SERVING_FRESHNESS, (key, policy)
        assert policy.fail_window.to_timedelta() == timedelta(hours=26) == FRESH_WITHIN
        assert policy.warn_window.to_timedelta() == timedelta(hours=25) == LATE_AFTER
    assert graph.get(dg.AssetKey("raw_ratings")).freshness_policy is None  # only where a missed day matters


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, hours_ago: float) -> None:
    """A materialization of `key` recorded `hours_ago` (a runless event with its own timestamp)."""
    event = DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                         event_specific_data=StepMaterializationData(dg.AssetMaterialization(key)),
                         job_name=RUNLESS_JOB_NAME)
    instance.report_dagster_event(event, run_id=RUNLESS_RUN_ID, timestamp=time.time() - hours_ago * 3600)


def _evaluate(instance: dg.DagsterInstance, defs: dg.Definitions) -> dict[dg.AssetKey, FreshnessState]:
    """One freshness daemon pass over the serving assets; the states it recorded."""
    graph = defs.resolve_asset_graph()
    daemon = FreshnessDaemon()

    async def run() -> None:
        context = LoadingContextForTest(instance)  # a fresh one per pass, as the daemon makes
        await asyncio.gather(*(daemon._evaluate_asset(context, graph.get(k)) for k in SERVING))  # noqa: SLF001

    asyncio.run(run())
    records = instance.get_freshness_state_records(SERVING)
    return {k: records[k].freshness_state for k in SERVING}


def test_a_missed_day_fails_and_a_late_one_warns() -> None:
    defs = _definitions()
    with dg.instance_for_test() as instance:
        assert instance.freshness_enabled  # the daemon `dagster dev` runs includes the freshness daemon
        assert _evaluate(instance, defs) == dict.fromkeys(SERVING, FreshnessState.UNKNOWN)  # never materialized
        _materialized(instance, SERVING[0], hours_ago=27)  # yesterday's day never made it through
        _materialized(instance, SERVING[1], hours_ago=25.5)  # late, not yet missed
        assert _evaluate(instance, defs) == {SERVING[0]: FreshnessState.FAIL, SERVING[1]: FreshnessState.WARN}
        _materialized(instance, SERVING[0], hours_ago=0.1)  # the next batch of days went through
        _materialized(instance, SERVING[1], hours_ago=0)
        assert _evaluate(instance, defs) == dict.fromkeys(SERVING, FreshnessState.PASS)
