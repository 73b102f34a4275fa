"""The champion gate as one explicit, idempotent, recorded step: judge one candidate, record once.

`decide(url, version)` is what the `champion_gate` check and the benchmarks call. The candidate is
named by the caller (the check takes the version its own run materialized), never looked up as
"the latest", so two concurrent trainings cannot judge each other's models. A session advisory
lock serialises gate decisions, so each judges against the champion as it is when it decides.
"""

from __future__ import annotations

from movierec_assets.db.connect import connect
from movierec_assets.ml import registry

GATE_LOCK = 7_301_415_927  # one advisory lock id for the gate (the migrations use ..926)


def decide(url: str, version: str, default_tolerance: float, run_id: str | None = None) -> registry.Decision:
    """The recorded decision on `version`: made now by `registry.gate` if there is none yet.

    Deciding a version twice returns the first decision unchanged (a re-executed check never
    re-promotes an old model over a newer champion). Raises KeyError for an unknown version.
    """
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))
        try:
            recorded = registry.decision(url, version)
            if recorded is not None:
                return recorded
            candidate = registry.get_version(url, version)
            if candidate is None:
                raise KeyError(f"model version {version} is not in ml.model_versions")
            tolerance = float(candidate.metrics.get("gate_tolerance", default_tolerance))
            verdict = registry.gate(candidate, registry.current_champion(url), tolerance)
            step = registry.promote if verdict.promote else registry.reject
            step(url, version, verdict.reason, run_id=run_id)
            decided = registry.decision(url, version)
            if decided is None:  # recorded in the same transaction as the status change
                raise RuntimeError(f"the decision on {version} was not recorded")
            return decided
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))
