"""The Dagster UI as a user sees it, in headless Debian Chromium driven by Playwright.

One module-scoped dev stack (see conftest.py): `movierec demo --days 3` fills a fresh instance,
then `movierec dev` serves it. Each test looks at one screen and saves a screenshot to docs/img/.
A check whose asset is not defined yet skips with the asset's name.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from movierec_assets_tests.e2e.conftest import DEMO_DAYS, SCREENSHOTS, DevStack

pytestmark = pytest.mark.e2e

GROUPS = ("ingest", "features", "ml", "serving")
# What "Materialize" is clicked on: the most downstream asset that exists, so the click does not
# set off a cascade of automation runs while the other screens are checked.
UI_MATERIALIZE_PREFERENCE = ("user_recommendations", "movie_embeddings", "scaling_stats", "raw_movies")
RUN_SECONDS = 240
UI_TIMEOUT_MS = 45_000


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=UI_TIMEOUT_MS)  # the React app can be slow on a busy 2-core machine
    return _expect


def shot(page: Any, name: str, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


def require(stack: DevStack, *names: str) -> None:
    missing = [n for n in names if n not in stack.assets]
    if missing:
        pytest.skip(f"waiting on asset(s) not defined yet: {', '.join(missing)}")


def asset_node(stack: DevStack, name: str, fields: str) -> dict[str, Any]:
    query = f"""query($key: AssetKeyInput!) {{ assetNodeOrError(assetKey: $key) {{
        __typename ... on AssetNode {{ {fields} }} }} }}"""
    node = stack.gql(query, {"key": {"path": [name]}})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return node


LATEST_METADATA = """assetMaterializations(limit: 1) { runId partition metadataEntries { label __typename
    ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
    ... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path } } }"""


def latest_metadata(stack: DevStack, name: str) -> dict[str, dict[str, Any]] | None:
    """The metadata of the asset's latest materialization (None: never materialized)."""
    mats = asset_node(stack, name, LATEST_METADATA)["assetMaterializations"]
    return {e["label"]: e for e in mats[0]["metadataEntries"]} if mats else None


def open_asset(page: Any, name: str, view: str = "") -> None:
    page.goto(f"/assets/{name}" + (f"?view={view}" if view else ""))
    expect()(page.get_by_role("link", name="Assets").first).to_be_visible()


def assert_visible(locator: Any, what: str, timeout: float = 30_000) -> None:
    try:
        expect()(locator).to_be_visible(timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"not shown in the UI: {what}") from exc


# -- the asset graph -----------------------------------------------------------------------------


def test_asset_graph_shows_assets_groups_and_lineage(page: Any, dev_stack: DevStack) -> None:
    assert dev_stack.assets, "the code location defines no assets"
    # Wide enough that the whole graph fits at a zoom where the nodes show their full names.
    page.set_viewport_size({"width": 2400, "height": 820})
    page.goto("/asset-groups")
    expect()(page.get_by_text("Global asset lineage")).to_be_visible()
    groups = sorted({n["groupName"] for n in dev_stack.assets.values()})
    assert set(groups) <= set(GROUPS), groups
    # Collapsed, the graph shows one box per group, with the lineage between groups.
    for group in groups:
        expect()(page.get_by_text(group, exact=True).first).to_be_visible()
    page.get_by_role("button", name="Hide navigation").click()
    page.locator("button").filter(has=page.locator('[aria-label="panel_show_right"]')).last.click()  # sidebar
    page.locator('[aria-label="settings"]').last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    for name in dev_stack.assets:
        assert_visible(page.get_by_text(name, exact=True).first, f"asset {name} in the expanded graph")
    time.sleep(1.5)  # let the layout settle before the screenshot the README opens with
    shot(page, "asset-graph.png")
    page.set_viewport_size({"width": 1600, "height": 1000})

    # Lineage as the asset pages list it, against the definitions the server loaded.
    for name, node in sorted(dev_stack.assets.items()):
        upstream = {"/".join(k["path"]) for k in node["dependencyKeys"]}
        downstream = {"/".join(k["path"]) for k in node["dependedByKeys"]}
        if node["groupName"] != "ingest":
            assert upstream, f"{name} ({node['groupName']}) has no upstream asset: the lineage is broken"
        # Deps on assets nobody defines yet are drawn as stubs in the graph, not listed on the page.
        upstream &= set(dev_stack.assets)
        downstream &= set(dev_stack.assets)
        open_asset(page, name)
        heading = page.get_by_text("Upstream assets", exact=True)
        columns = {"upstream": (heading.locator("xpath=.."), upstream),
                   "downstream": (page.get_by_text("Downstream assets", exact=True).locator("xpath=.."), downstream)}
        for direction, (column, expected) in columns.items():
            for other in expected:
                assert_visible(column.get_by_text(other, exact=True).first, f"{name}: {direction} {other}")
        expect()(page.get_by_text(node["groupName"], exact=True).first).to_be_visible()


# -- partitions --------------------------------------------------------------------------------


def partition_days(stack: DevStack) -> dict[str, list[str]]:
    """{status: [day, ...]} of daily_partitioned_ratings, as the server reports it."""
    node = asset_node(stack, "daily_partitioned_ratings", """assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startKey endKey } } }""")
    days: dict[str, list[str]] = {}
    for r in node["assetPartitionStatuses"]["ranges"]:
        days.setdefault(r["status"], []).extend(_day_span(r["startKey"], r["endKey"]))
    return days


def _day_span(first: str, last: str) -> list[str]:
    from datetime import date, timedelta

    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def wait_for_days(stack: DevStack, n: int, seconds: float = RUN_SECONDS) -> dict[str, list[str]]:
    """The partition days by status, once n have finished (the daemon may still be loading some)."""
    deadline = time.monotonic() + seconds
    days = partition_days(stack)
    while len(days.get("MATERIALIZED", [])) + len(days.get("FAILED", [])) < n and time.monotonic() < deadline:
        time.sleep(2)
        days = partition_days(stack)
    return days


def test_partitions_view_shows_materialized_days(page: Any, dev_stack: DevStack) -> None:
    require(dev_stack, "daily_partitioned_ratings")
    statuses = wait_for_days(dev_stack, DEMO_DAYS)
    days = statuses.get("MATERIALIZED", [])
    assert len(days) >= DEMO_DAYS, (
        f"the demo replayed {DEMO_DAYS} days; materialized {days}, failed {statuses.get('FAILED', [])}:\n"
        f"{dev_stack.log_tail(30)}")
    open_asset(page, "daily_partitioned_ratings", "partitions")
    counter = page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))
    expect()(counter).to_be_visible()
    shown = int(re.search(r"\d+", counter.inner_text()).group(0))  # type: ignore[union-attr]
    assert shown >= len(days), f"the UI counts {shown} materialized days, the instance {len(days)}"
    # Hide the missing days: the replayed ones are the earliest, at the bottom of a long list.
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).click()
    for day in days:
        expect()(page.get_by_text(day, exact=True).first).to_be_visible()
    page.get_by_text(days[-1], exact=True).first.click()
    expect()(page.get_by_text("Latest materialization").first).to_be_visible()
    time.sleep(1)
    shot(page, "partitions.png")


# -- the trained model ---------------------------------------------------------------------------


def test_trained_model_page_shows_metrics_and_training_curve(page: Any, dev_stack: DevStack) -> None:
    require(dev_stack, "trained_model")
    meta = latest_metadata(dev_stack, "trained_model")
    assert meta is not None, "trained_model was never materialized"
    metrics = {k: v for k, v in meta.items()
               if v["__typename"] in ("FloatMetadataEntry", "IntMetadataEntry") and not k.startswith("dagster/")}
    assert metrics, f"trained_model reports no numeric metrics: {sorted(meta)}"
    curves = [k for k, v in meta.items() if v["__typename"] == "MarkdownMetadataEntry"
              and re.search(r"!\[|<img", v["mdStr"] or "")]
    assert curves, f"trained_model has no markdown metadata with the training-curve image: {sorted(meta)}"
    open_asset(page, "trained_model")
    table = page.locator("table").filter(has_text=curves[0]).first
    for label in metrics:
        expect()(table.get_by_text(label, exact=True).first).to_be_visible()
    table.get_by_text(next(iter(metrics)), exact=True).first.scroll_into_view_if_needed()
    shot(page, "trained-model.png")
    row = table.locator("tr").filter(has_text=curves[0]).first
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    image = dialog.locator("img").first
    expect()(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    shot(page, "training-curve.png")
    page.keyboard.press("Escape")


# -- asset checks ------------------------------------------------------------------------------


CHECKS = """assetChecksOrError { __typename ... on AssetChecks { checks { name blocking
    executionForLatestMaterialization { status } } } }"""


def settled_checks(stack: DevStack, name: str, seconds: float = RUN_SECONDS) -> list[dict[str, Any]]:
    """The asset's checks once none is still running (an automation run may be evaluating one)."""
    deadline = time.monotonic() + seconds
    while True:
        checks = asset_node(stack, name, CHECKS)["assetChecksOrError"]["checks"]
        running = [c for c in checks if (c["executionForLatestMaterialization"] or {}).get("status") == "IN_PROGRESS"]
        if not running or time.monotonic() > deadline:
            return checks
        time.sleep(2)


def test_asset_checks_and_results_are_visible(page: Any, dev_stack: DevStack) -> None:
    checked = sorted(n for n, node in dev_stack.assets.items() if node["hasAssetChecks"])
    if not checked:
        pytest.skip("waiting on asset checks: no asset defines one yet (trained_model's blocking check)")
    for name in checked:
        checks = settled_checks(dev_stack, name)
        open_asset(page, name, "checks")
        for check in checks:
            execution = check["executionForLatestMaterialization"]
            assert execution is not None, f"{name}.{check['name']} never ran"
            item = page.get_by_text(check["name"], exact=True).first
            expect()(item).to_be_visible()
            item.click()
            expect()(page.get_by_text("Evaluation result")).to_be_visible()
            label = {"SUCCEEDED": "Passed", "FAILED": "Failed"}.get(execution["status"], execution["status"].title())
            expect()(page.get_by_text(label, exact=True).first).to_be_visible()
            if check["blocking"]:
                expect()(page.get_by_text("blocking").first).to_be_visible()
        shot(page, "asset-checks.png" if name == "trained_model" or len(checked) == 1 else f"asset-checks-{name}.png")


# -- standard metadata --------------------------------------------------------------------------


def test_assets_report_standard_metadata(page: Any, dev_stack: DevStack) -> None:
    """Row counts and column schemas under Dagster's own keys, so the UI shows them natively."""
    missing: dict[str, list[str]] = {}
    for name in sorted(dev_stack.assets):
        meta = latest_metadata(dev_stack, name)
        if meta is None:
            missing[name] = ["never materialized"]
            continue
        definition = asset_node(dev_stack, name, "metadataEntries { label }")["metadataEntries"]
        labels = set(meta) | {e["label"] for e in definition}
        lacking = [k for k in ("dagster/row_count", "dagster/column_schema", "dagster/table_name") if k not in labels]
        if lacking:
            missing[name] = lacking
    assert not missing, f"assets lacking Dagster's standard metadata keys: {missing}"
    name = next((n for n in ("raw_ratings", "daily_partitioned_ratings") if n in dev_stack.assets), None)
    if name:
        open_asset(page, name)
        expect()(page.get_by_text("Columns", exact=True).first).to_be_visible()
        expect()(page.get_by_text(re.compile("row count", re.I)).first).to_be_visible()


# -- a materialization launched from the UI ----------------------------------------------------------


RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status } } }"""
RECENT_RUNS = """{ runsOrError(limit: 20) { ... on Runs { results { runId status } } } }"""


def test_materialize_from_the_ui_succeeds(page: Any, dev_stack: DevStack) -> None:
    target = next((n for n in UI_MATERIALIZE_PREFERENCE if n in dev_stack.assets
                   and not dev_stack.assets[n]["isPartitioned"]), None)
    if target is None:
        pytest.skip("no unpartitioned asset is defined yet to materialize from the UI")
    open_asset(page, target)
    button = page.get_by_role("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).first
    expect()(button).to_be_enabled()
    button.click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect()(toast).to_be_visible(timeout=60_000)
    prefix = re.search(r"[0-9a-f]{8}", toast.inner_text()).group(0)  # type: ignore[union-attr]
    runs = dev_stack.gql(RECENT_RUNS)["runsOrError"]["results"]
    run_id = next(r["runId"] for r in runs if r["runId"].startswith(prefix))
    page.goto(f"/runs/{run_id}")
    deadline = time.monotonic() + RUN_SECONDS
    status = ""
    while time.monotonic() < deadline:
        status = dev_stack.gql(RUN, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} for {target} ended {status or 'unfinished'}:\n{dev_stack.log_tail()}"
    expect()(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=30_000)
    shot(page, "ui-materialize-run.png")
    open_asset(page, target)
    expect()(page.get_by_text("Latest materialization").first).to_be_visible()


# -- a replayed day flows through the live daemon ------------------------------------------------------


def test_replayed_day_flows_through_the_landing_sensor(page: Any, dev_stack: DevStack) -> None:
    """`movierec replay --days 1` drops the next day file; the daemon's landing_zone_sensor loads it."""
    require(dev_stack, "daily_partitioned_ratings")
    before = partition_days(dev_stack)
    done_before = len(before.get("MATERIALIZED", [])) + len(before.get("FAILED", []))
    replay = dev_stack.run_cli("replay", "--days", "1", timeout=60)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    day = re.search(r"\d{4}-\d{2}-\d{2}", replay.stdout)
    assert day, f"replay wrote no day: {replay.stdout}"
    after = wait_for_days(dev_stack, done_before + 1)
    assert day.group(0) in after.get("MATERIALIZED", []), (
        f"{day.group(0)} was not loaded by the sensor: {after.get('FAILED', [])} failed\n{dev_stack.log_tail(30)}")
    open_asset(page, "daily_partitioned_ratings", "partitions")
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).click()
    page.get_by_text(day.group(0), exact=True).first.click()
    expect()(page.get_by_text("rows_loaded", exact=True).first).to_be_visible()
    # Its run, as the run page tells it: launched by the sensor, for that partition, successful.
    page.get_by_text("Run", exact=True).locator("xpath=..").get_by_role("link").first.click()
    assert_visible(page.get_by_text("Launched by").first, "the run's launcher")
    assert_visible(page.get_by_text("landing_zone_sensor").first, f"the run of {day.group(0)} launched by its sensor")
    assert_visible(page.get_by_text(f"partition: {day.group(0)}").first, "the run's partition")
    assert_visible(page.get_by_text("Success", exact=True).first, "the run's success")
    shot(page, "replayed-day.png")
