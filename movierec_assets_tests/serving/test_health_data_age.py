"""/health reports the age of the data the served model was trained on: the served version's
`ml.model_versions.data_end`, the newest rating loaded, and the hours between them, on the real
server and the real app (both the fast path and the FastAPI route), as days land and versions change.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec_assets.db.connect import connect
from movierec_assets.ingest import rated
from movierec_assets.ingest.days import load_days
from movierec_assets.ml import registry
from movierec_assets.serving.online.api import create_app
from movierec_assets.serving.online.recommender import from_database
from movierec_assets_tests.serving.test_database import load_world, materialize, train_champion

HISTORY_END = datetime(2024, 6, 1, 0, 16, tzinfo=UTC)  # the world's 17 history rows, a minute apart
LANDED_END = datetime(2024, 6, 2, 0, 2, tzinfo=UTC)  # its partition day: 3 rows a minute apart
NEW_DAY = date(2024, 6, 5)
NEW_DAY_RATING = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


def _health(client: TestClient) -> list[dict]:
    """/health now, by the fast path and by the FastAPI route (a query string), after a fresh check."""
    assert client.app.state.probe.check() is None  # type: ignore[attr-defined]
    bodies = [client.get("/health"), client.get("/health", params={"via": "fastapi"})]
    assert all(b.status_code == 200 for b in bodies), [b.text for b in bodies]
    return [b.json() for b in bodies]


def _age(client: TestClient) -> tuple[str | None, str | None, float | None, str]:
    fast, routed = _health(client)
    keys = ("model_data_end", "newest_rating_at", "model_data_age_hours", "model_version")
    assert [fast[k] for k in keys] == [routed[k] for k in keys]
    return tuple(fast[k] for k in keys)  # type: ignore[return-value]


def _set_data_end(url: str, version: str, data_end: datetime | None) -> None:
    with connect(url) as conn:
        conn.execute("UPDATE ml.model_versions SET data_end = %s WHERE version = %s", (data_end, version))


def test_health_reports_the_served_models_data_age(pg_url: str, tmp_path: Path) -> None:
    from movierec_assets.assets.serving import movie_embeddings

    load_world(pg_url)
    v1 = train_champion(pg_url, seed=3)
    materialize(movie_embeddings)
    app = create_app(lambda: from_database(pg_url, reload_every=3600), reload_poll_s=3600, database_url=pg_url)
    try:
        with TestClient(app) as client:
            # The registry does not know what v1 saw: no end, no age (the newest rating is still known).
            assert _age(client) == (None, LANDED_END.isoformat(), None, v1)
            _set_data_end(pg_url, v1, HISTORY_END)  # trained on the history only
            assert _age(client) == (HISTORY_END.isoformat(), LANDED_END.isoformat(), 23.767, v1)  # 23 h 46 min

            (tmp_path / f"{NEW_DAY.isoformat()}.csv").write_text(
                f"userId,movieId,rating,timestamp\n1,4,4.0,{int(NEW_DAY_RATING.timestamp())}\n")
            assert load_days(pg_url, [NEW_DAY], tmp_path).rows_loaded == 1  # a later day lands
            assert _age(client) == (HISTORY_END.isoformat(), NEW_DAY_RATING.isoformat(), 107.733, v1)

            # A newer champion without embeddings yet: v1 still serves, so /health keeps v1's age.
            entry = registry.get_version(pg_url, v1)
            assert entry is not None
            registry.register_candidate(pg_url, f"{v1}-newer", Path(entry.path), {}, None, NEW_DAY_RATING)
            registry.promote(pg_url, f"{v1}-newer")
            assert client.app.state.recommender.maybe_reload(force=True) is False  # type: ignore[attr-defined]
            assert _age(client) == (HISTORY_END.isoformat(), NEW_DAY_RATING.isoformat(), 107.733, v1)

            # Every landed day gone: the newest rating is the history's, which v1 saw whole.
            with connect(pg_url) as conn:
                conn.execute("DELETE FROM movielens.ratings WHERE partition_day IS NOT NULL")
            assert _age(client) == (HISTORY_END.isoformat(), HISTORY_END.isoformat(), 0.0, v1)
    finally:
        rated.rebuild_all(pg_url)


def test_without_a_database_probe_the_age_is_not_claimed() -> None:
    from movierec_assets_tests.serving.helpers import make_world

    world = make_world(n_movies=300)
    with TestClient(create_app(world.recommender)) as client:
        body = client.get("/health").json()
    assert body["model_version"] == "v1" and body["database"] is None
    assert (body["model_data_end"], body["newest_rating_at"], body["model_data_age_hours"]) == (None, None, None)


@pytest.mark.parametrize("version", [None, "not-served"])
def test_an_age_read_for_another_version_is_not_reported(pg_url: str, version: str | None) -> None:
    from movierec_assets.serving.online.health import DatabaseProbe

    probe = DatabaseProbe(pg_url, served_version=lambda: "v-probe")
    try:
        assert probe.check() is None
        assert probe.data_age("v-probe")["model_data_end"] is None  # not in the registry: unknown
        assert probe.data_age(version) == {"model_data_end": None, "newest_rating_at": None,
                                           "model_data_age_hours": None}
    finally:
        probe.close()
