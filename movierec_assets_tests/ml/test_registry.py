"""Registry transitions on the real PostgreSQL (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec_assets.db.connect import connect
from movierec_assets.ml import registry


def _candidate(url: str, root: Path, version: str, metrics: dict) -> registry.ModelVersion:
    vdir = root / version
    vdir.mkdir(parents=True)
    (vdir / registry.MODEL_FILE).write_bytes(b"placeholder")
    return registry.register_candidate(url, version, vdir, metrics, None, None)


def test_gate_promotes_retires_and_rejects(pg_url: str, tmp_path: Path) -> None:
    with connect(pg_url) as conn:
        conn.execute("DELETE FROM ml.model_versions")
        conn.commit()
    a = _candidate(pg_url, tmp_path, "v1", {"holdout_rmse": 0.90, "bad": float("nan")})
    assert a.metrics["bad"] is None  # NaN stored as JSON null
    assert registry.gate(a, None, 0.01).promote
    registry.promote(pg_url, "v1")
    b = _candidate(pg_url, tmp_path, "v2", {"holdout_rmse": 0.905, "champion_version": "v1",
                                            "champion_holdout_rmse": 0.90})
    decision = registry.gate(b, registry.current_champion(pg_url), 0.01)
    assert decision.promote  # 0.905 <= 0.90 * 1.01
    registry.promote(pg_url, "v2", decision.reason)
    assert registry.get_version(pg_url, "v1").status == "retired"
    c = _candidate(pg_url, tmp_path, "v3", {"holdout_rmse": 0.95, "champion_version": "v2",
                                            "champion_holdout_rmse": 0.90})
    decision = registry.gate(c, registry.current_champion(pg_url), 0.01)
    assert not decision.promote and "worse than champion v2" in decision.reason
    registry.reject(pg_url, "v3", decision.reason)
    assert registry.current_champion(pg_url).version == "v2"
    assert registry.get_version(pg_url, "v3").reason == decision.reason
    with pytest.raises(ValueError, match="rejected"):
        registry.promote(pg_url, "v3")
    with pytest.raises(ValueError, match="champion"):
        registry.reject(pg_url, "v2", "no")
    assert [v.status for v in registry.list_versions(pg_url)].count("champion") == 1


def test_version_paths_are_plain_names(tmp_path: Path) -> None:
    assert registry.version_dir("20260101T000000-abc123", tmp_path) == tmp_path / "20260101T000000-abc123"
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            registry.version_dir(bad, tmp_path)
