"""The model registry: versioned model files under `$MOVIEREC_HOME/models/<version>/` and their
rows in `ml.model_versions` (see sql/003_ml_registry.sql).

Status moves candidate -> champion | rejected; a replaced champion becomes retired. Promotion and
rejection each run in one transaction, are recorded once in `ml.model_decisions` (with
`decided_at` and the deciding run) and are idempotent; at most one champion exists (a unique index
enforces it).
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec_assets.config import paths
from movierec_assets.db.connect import connect

MODEL_FILE = "model.keras"
_SELECT = ("SELECT version, created_at, metrics, path, data_start, data_end, status, reason, decided_at, policy,"
           " parent_version, trained_on FROM ml.model_versions")


@dataclass(frozen=True)
class ModelVersion:
    version: str
    created_at: datetime
    metrics: dict[str, Any]
    path: str
    data_start: datetime | None
    data_end: datetime | None
    status: str
    reason: str | None
    decided_at: datetime | None = None  # when the gate promoted or rejected it
    policy: str = "full"  # the retraining policy that made it: full | warm (sql/008)
    parent_version: str | None = None  # the champion a warm version was fine-tuned from
    trained_on: dict[str, Any] = field(default_factory=dict)  # the data it saw (rows, windows, sample)

    @property
    def model_file(self) -> Path:
        return Path(self.path) / MODEL_FILE


def new_version(now: datetime | None = None) -> str:
    """Sortable and unique: UTC timestamp plus a short random suffix."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def version_dir(version: str, root: Path | None = None) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise ValueError(f"invalid model version: {version!r}")
    return (root or paths().models) / version


def register_candidate(
    url: str,
    version: str,
    path: Path,
    metrics: dict[str, Any],
    data_start: datetime | None,
    data_end: datetime | None,
    policy: str = "full",
    parent_version: str | None = None,
    trained_on: dict[str, Any] | None = None,
) -> ModelVersion:
    """Record a saved model as a candidate (the model file must already exist), with its lineage:
    the policy that made it, its parent (warm only) and the data it saw."""
    if not (Path(path) / MODEL_FILE).exists():
        raise FileNotFoundError(f"no {MODEL_FILE} in {path}: save the model before registering it")
    with connect(url) as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO ml.model_versions (version, metrics, path, data_start, data_end, status, policy,"
            " parent_version, trained_on) VALUES (%s, %s::jsonb, %s, %s, %s, 'candidate', %s, %s, %s::jsonb)"
            " RETURNING version, created_at, metrics, path, data_start, data_end, status, reason, decided_at,"
            " policy, parent_version, trained_on",
            (version, json.dumps(_json_safe(metrics)), str(path), data_start, data_end, policy, parent_version,
             json.dumps(_json_safe(trained_on or {}))),
        ).fetchone()
    return _row(row)


def get_version(url: str, version: str) -> ModelVersion | None:
    with connect(url) as conn:
        row = conn.execute(_SELECT + " WHERE version = %s", (version,)).fetchone()
    return _row(row) if row else None


def current_champion(url: str) -> ModelVersion | None:
    """The model inference must use, or None before the first promotion."""
    with connect(url) as conn:
        row = conn.execute(_SELECT + " WHERE status = 'champion'").fetchone()
    return _row(row) if row else None


def list_versions(url: str) -> list[ModelVersion]:
    with connect(url) as conn:
        rows = conn.execute(_SELECT + " ORDER BY created_at, version").fetchall()
    return [_row(r) for r in rows]


# From a version up its parent_version links; a full version ends the walk. Parents are older
# than their children, so there is no cycle; the depth bound is a guard all the same.
_LINEAGE_SQL = (
    "WITH RECURSIVE chain AS ("
    " SELECT v.*, 0 AS depth FROM ml.model_versions v WHERE v.version = %s"
    " UNION ALL"
    " SELECT p.*, chain.depth + 1 FROM chain JOIN ml.model_versions p ON p.version = chain.parent_version"
    " WHERE chain.policy <> 'full' AND chain.depth < 100000)"
    " SELECT version, created_at, metrics, path, data_start, data_end, status, reason, decided_at, policy,"
    " parent_version, trained_on FROM chain ORDER BY depth"
)


def lineage(url: str, version: str) -> list[ModelVersion]:
    """`version`, its parent, the parent's parent... up to and including the first full model (or
    the oldest ancestor still registered). Empty for an unknown version."""
    with connect(url) as conn:
        rows = conn.execute(_LINEAGE_SQL, (version,)).fetchall()
    return [_row(r) for r in rows]


@dataclass(frozen=True)
class Decision:
    """The gate's recorded verdict on one version (`ml.model_decisions`, sql/006)."""

    version: str
    decision: str  # promoted | rejected
    reason: str
    run_id: str | None  # the Dagster run whose gate decided
    champion_before: str | None
    decided_at: datetime


def promote(url: str, version: str, reason: str | None = None, run_id: str | None = None) -> ModelVersion:
    """Make `version` the champion and retire the previous one, recording the decision, in one
    transaction. Idempotent: a version already promoted is returned as it is (a later champion
    stays champion); a rejected one raises."""
    return _decide(url, version, "promoted", reason or "", run_id)


def reject(url: str, version: str, reason: str, run_id: str | None = None) -> ModelVersion:
    """Mark a candidate rejected, keeping its row, files and the reason, and record the decision.
    Idempotent: a version already rejected is returned as it is; a promoted one raises."""
    return _decide(url, version, "rejected", reason, run_id)


def decision(url: str, version: str) -> Decision | None:
    """The recorded decision on `version`, or None while it is undecided."""
    with connect(url) as conn:
        row = conn.execute("SELECT version, decision, reason, run_id, champion_before, decided_at"
                           " FROM ml.model_decisions WHERE version = %s", (version,)).fetchone()
    return Decision(*row) if row else None


def _decide(url: str, version: str, outcome: str, reason: str, run_id: str | None) -> ModelVersion:
    with connect(url) as conn, conn.transaction():
        # Serialise decisions on the registry table (at most one champion, one decision per version).
        conn.execute("LOCK TABLE ml.model_versions IN SHARE ROW EXCLUSIVE MODE")
        status = _status_for_update(conn, version)
        done = conn.execute("SELECT decision FROM ml.model_decisions WHERE version = %s", (version,)).fetchone()
        if done is not None or status != "candidate":
            previous = done[0] if done else status
            if previous != outcome and not (outcome == "promoted" and previous in ("champion", "retired")):
                raise ValueError(f"model {version} was already decided ({previous}, now {status}); "
                                 f"it cannot be {outcome}")
            row = conn.execute(_SELECT + " WHERE version = %s", (version,)).fetchone()
            return _row(row)
        champion = conn.execute("SELECT version FROM ml.model_versions WHERE status = 'champion'").fetchone()
        if outcome == "promoted":
            conn.execute("UPDATE ml.model_versions SET status = 'retired', retired_at = now()"
                         " WHERE status = 'champion' AND version <> %s", (version,))
        row = conn.execute(
            "UPDATE ml.model_versions SET status = %s, reason = %s, decided_at = now() WHERE version = %s"
            " RETURNING version, created_at, metrics, path, data_start, data_end, status, reason, decided_at,"
            " policy, parent_version, trained_on",
            ("champion" if outcome == "promoted" else "rejected", reason, version),
        ).fetchone()
        conn.execute("INSERT INTO ml.model_decisions (version, decision, reason, run_id, champion_before, decided_at)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (version, outcome, reason, run_id, champion[0] if champion else None, row[8]))
    return _row(row)


def load_model(path: str | Path) -> Any:
    """Load a registered model (a version directory or its .keras file) with safe_mode=True."""
    import keras  # Keras (TensorFlow): only when a model is loaded; registry is on the definitions path

    from movierec_assets.ml import two_tower  # noqa: F401  (Keras; registers the serializable classes)

    file = Path(path)
    if file.is_dir():
        file = file / MODEL_FILE
    return keras.saving.load_model(file, safe_mode=True)


def _json_safe(value: Any) -> Any:
    """NaN/inf become null (jsonb rejects them); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(candidate: ModelVersion, champion: ModelVersion | None, tolerance: float,
         metric: str = "holdout_rmse", ndcg_tolerance: float | None = None) -> GateDecision:
    """Promote when there is no champion, or when, on the same held-out events (measured at
    training time), the candidate's holdout RMSE is not worse than the champion's by more than
    `tolerance` (relative) AND its NDCG@10 is not lower by more than `ndcg_tolerance` (relative;
    default: the candidate's recorded `ndcg_tolerance`, else `tolerance`). A better RMSE does not
    buy a worse top-N: what users see is the ranking. The reason names both comparisons."""
    if champion is None:
        return GateDecision(True, "first model: no champion to compare with")
    if champion.version == candidate.version:
        return GateDecision(True, "already champion")
    if candidate.metrics.get(metric) is None:
        return GateDecision(False, f"candidate has no {metric}")
    if ndcg_tolerance is None:
        ndcg_tolerance = float(candidate.metrics.get("ndcg_tolerance") or tolerance)
    rmse_ok, rmse_why = _compare(candidate, champion, metric, tolerance, lower_is_better=True)
    ndcg_ok, ndcg_why = _compare(candidate, champion, NDCG_METRIC, ndcg_tolerance, lower_is_better=False)
    return GateDecision(rmse_ok and ndcg_ok, f"{rmse_why}; {ndcg_why}")


NDCG_METRIC = "holdout_ndcg_at_10"


def _compare(candidate: ModelVersion, champion: ModelVersion, metric: str, tolerance: float,
             lower_is_better: bool) -> tuple[bool, str]:
    """One metric against the champion's on the candidate's events (`champion_<metric>`), or, when
    the champion could not be scored there (e.g. a new feature set), its own recorded value."""
    ours = candidate.metrics.get(metric)
    theirs = candidate.metrics.get(f"champion_{metric}")
    if candidate.metrics.get("champion_version") != champion.version or theirs is None:
        theirs = champion.metrics.get(metric)
    if ours is None or theirs is None:
        return True, f"{metric}: no comparable value (not gated)"
    ours, theirs = float(ours), float(theirs)
    if lower_is_better:
        ok, limit, sign = ours <= theirs * (1.0 + tolerance), "(1 + ", "<="
    else:
        ok, limit, sign = ours >= theirs * (1.0 - tolerance), "(1 - ", ">="
    if ok:
        return True, f"{metric} {ours:.4f} {sign} champion {theirs:.4f} x {limit}{tolerance})"
    return False, (f"{metric} {ours:.4f} worse than champion {champion.version} {theirs:.4f}"
                   f" beyond tolerance {tolerance}")


def _status_for_update(conn: Any, version: str) -> str:
    row = conn.execute("SELECT status FROM ml.model_versions WHERE version = %s FOR UPDATE", (version,)).fetchone()
    if row is None:
        raise KeyError(f"unknown model version: {version}")
    return str(row[0])


def _row(row: Any) -> ModelVersion:
    (version, created_at, metrics, path, data_start, data_end, status, reason, decided_at, policy, parent,
     trained_on) = row
    metrics, trained_on = (json.loads(v) if isinstance(v, str) else v for v in (metrics, trained_on))
    return ModelVersion(version, created_at, metrics or {}, path, data_start, data_end, status, reason, decided_at,
                        policy, parent, trained_on or {})
