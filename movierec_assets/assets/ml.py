"""Assets of the ml group: `trained_model` and its blocking champion gate.

TensorFlow/Keras are imported inside the asset and check bodies only (definitions load fast).
The work itself lives in movierec_assets.ml.training_job (pure functions, testable without Dagster).
"""


from typing import Any

import dagster as dg

from movierec_assets.metadata import rounded
from movierec_assets.ml import promotion, registry
from movierec_assets.ml.config import TRAINING_POOL
from movierec_assets.ml.policy import FULL_RETRAIN_CRON
from movierec_assets.resources.database import PostgresResource
from movierec_assets.resources.retry import retry_if_database_drops

OWNERS = ["team:movierec"]
TRAINED_MODEL = dg.AssetKey("trained_model")
FEATURE_DEPS = [dg.AssetKey("user_features"), dg.AssetKey("movie_features"), dg.AssetKey("scaling_stats")]
REGISTRY_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("version", "text", description="sortable UTC timestamp + random suffix"),
    dg.TableColumn("created_at", "timestamptz"),
    dg.TableColumn("metrics", "jsonb", description="holdout and baseline metrics, training stats"),
    dg.TableColumn("path", "text", description="`$MOVIEREC_HOME/models/{version}/`"),
    dg.TableColumn("data_start", "timestamptz"),
    dg.TableColumn("data_end", "timestamptz"),
    dg.TableColumn("status", "text", description="candidate | champion | rejected | retired"),
    dg.TableColumn("reason", "text", description="why the gate promoted or rejected it"),
    dg.TableColumn("policy", "text", description="the retraining policy that made it: full | warm"),
    dg.TableColumn("parent_version", "text", description="the champion a warm version was fine-tuned from"),
    dg.TableColumn("trained_on", "jsonb", description="the data it saw: rows, holdout, new-days window, sample"),
])
# Retrain once after the features refresh, however many days a backfill delivered: fire when a
# feature table updated since the last request, never while a dependency or this asset runs.
# (`without(~any_deps_missing())`: a never-materialized feature table must not block the model
# forever, as `eager()` alone would.) Or once after the weekly tick, updates or not: the run's
# `auto` policy then trains from scratch (ml/policy.py; it trains nothing if nothing is new).
_NOT_BUSY = ~dg.AutomationCondition.in_progress() & ~dg.AutomationCondition.any_deps_in_progress()
RETRAIN_CONDITION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    | (dg.AutomationCondition.cron_tick_passed(FULL_RETRAIN_CRON).since_last_handled() & _NOT_BUSY)
    .with_label(f"weekly full retrain ({FULL_RETRAIN_CRON})")
)


def _run_config_class() -> type[dg.Config]:
    """`TrainedModelConfig`: one field per `ml.config.TrainConfig`/`JobConfig` field, same name and
    default (tuples as lists). The dataclasses are the single source; nothing here is hand-kept."""
    from pydantic import create_model

    from movierec_assets.ml.config import flat_defaults  # no TensorFlow: dataclasses only

    def kind(value: Any) -> Any:
        return list[int] if isinstance(value, list) else type(value)

    fields: dict[str, Any] = {name: (kind(v), v) for name, v in flat_defaults().items()}
    cls = create_model("TrainedModelConfig", __base__=dg.Config, __module__=__name__, **fields)
    cls.__doc__ = ("Training run config: every field and default comes from movierec_assets.ml.config "
                   "(TrainConfig, then JobConfig), chosen by the evaluation in docs/model_evaluation.md.")
    return cls


TrainedModelConfig = _run_config_class()


def _job_config(config: Any) -> Any:
    """The training job's config, field by field from the run config (no hand-kept copy to drift)."""
    from movierec_assets.ml.config import flat_defaults, job_from_flat

    return job_from_flat({name: getattr(config, name) for name in flat_defaults()})


def _baseline_table(rows: list[dict[str, object]]) -> str:
    lines = ["| method | RMSE | Recall@10 | NDCG@10 | events | ranked users |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['rmse']:.4f} | {r['recall_at_10']:.4f} | {r['ndcg_at_10']:.4f}"
                     f" | {r['n_events']} | {r['n_ranked_users']} |")
    return "\n".join(lines)


@dg.asset(
    group_name="ml",
    kinds={"tensorflow", "postgres"},
    owners=OWNERS,
    code_version="trained_model-v3",
    deps=FEATURE_DEPS,
    automation_condition=RETRAIN_CONDITION,
    pool=TRAINING_POOL,
    description=(
        "Two-tower ColaborativeFiltering model under the run config's `retrain_policy` (ml/policy.py): "
        "`full` trains on every rating in PostgreSQL (history plus injected days) with a time-ordered "
        "validation split, `warm` fine-tunes the champion on the ratings after its data_end plus a sample "
        "of older ones, `none` keeps the champion; `auto` (default) warms on new days and trains in full "
        "weekly or when the features or architecture changed. Saved under `$MOVIEREC_HOME/models/{version}/` "
        "and registered as a candidate in ml.model_versions with its policy, parent and data; the "
        "champion_gate check promotes it."
    ),
)
def trained_model(context: dg.AssetExecutionContext, config: TrainedModelConfig,  # type: ignore[valid-type]
                  postgres: PostgresResource) -> dg.MaterializeResult:
    # Inside the body: these import TensorFlow/Keras and matplotlib.
    from movierec_assets.ml import plots
    from movierec_assets.ml.training_job import run

    with retry_if_database_drops(context):  # a retried run resumes from the training checkpoints
        url = postgres.url()
        job = run(url, _job_config(config), context.log)
        n_versions = len(registry.list_versions(url))
        chain = registry.lineage(url, job.version.version) if job.version is not None else []
    lineage = _lineage_metadata(job.plan, chain)
    # What each retraining policy buys per CPU second (the committed bench_continual replay).
    lineage["continual_training"] = dg.MetadataValue.md(plots.continual_markdown())
    if job.version is None or job.train is None:  # policy none: the champion stays, no new version
        champion = job.plan.champion
        context.log.info(f"no new model: {job.plan.reason}")
        return dg.MaterializeResult(metadata={
            "dagster/table_name": "ml.model_versions", "dagster/row_count": n_versions, **lineage,
            "serving_version": champion.version if champion else "none",
            "new_ratings": job.plan.new_ratings, "trained": False})
    m, tr = job.metrics, job.train
    context.log.info(f"model {job.version.version} ({job.plan.policy}): holdout RMSE {m['holdout_rmse']:.4f} "
                     f"after {tr.epochs_run} epochs")
    curve = plots.markdown_image(plots.training_curve_png(tr.history))
    md = dg.MetadataValue
    return dg.MaterializeResult(metadata=rounded({
        "dagster/table_name": "ml.model_versions",
        "dagster/row_count": n_versions,
        "dagster/column_schema": REGISTRY_SCHEMA,
        "model_version": job.version.version,
        **lineage,
        "trained": True,
        "trained_on": md.json(job.version.trained_on),
        "model_path": md.path(str(job.version.path)),
        "epochs": tr.epochs_run,
        "initial_epoch": tr.initial_epoch,
        "examples_per_second": md.float(tr.examples_per_second),
        "train_seconds": md.float(tr.seconds),
        "final_loss": md.float(tr.final_loss),
        "final_val_loss": md.float(tr.final_val_loss),
        "validation_rmse": md.float(tr.val_rmse),
        "recall_at_10": md.float(float(m.get("two_tower_recall_at_10", float("nan")))),
        "ndcg_at_10": md.float(float(m.get("two_tower_ndcg_at_10", float("nan")))),
        "ranking_prior": md.json(tr.extra.get("ranking_prior") or {}),
        "train_events": tr.n_train,
        "holdout_events": tr.n_val,
        "champion_version": str(m.get("champion_version")),
        "champion_holdout_rmse": md.float(float(m["champion_holdout_rmse"] or float("nan"))),
        "baselines": md.md(_baseline_table(job.holdout_rows)) if job.holdout_rows else "streamed: none",
        "training_curve": md.md(curve),
    }))


def _lineage_metadata(plan: Any, chain: list[registry.ModelVersion]) -> dict[str, Any]:
    """The policy applied and why, the parent, and the chain back to the first full model."""
    new = chain[0] if chain else None
    rows = ["| version | policy | parent | data_end | status |", "|---|---|---|---|---|"]
    rows += [f"| {v.version} | {v.policy} | {v.parent_version or ''} | {v.data_end} | {v.status} |" for v in chain]
    return {
        "policy": plan.policy,
        "requested_policy": plan.requested,
        "policy_reason": plan.reason,
        "parent_version": (new.parent_version if new else None) or "none",
        "lineage": dg.MetadataValue.md("\n".join(rows)) if chain else "no new version",
    }


def _run_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any] | None:
    """The metadata of the last `trained_model` materialization of run `run_id` (None if none)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in reversed(records):
        materialization = record.event_log_entry.asset_materialization
        if materialization and materialization.asset_key == TRAINED_MODEL:
            return {k: v.value for k, v in materialization.metadata.items()}
    return None


def candidate_of_run(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The model version `trained_model` materialized in run `run_id` (None if it trained none)."""
    meta = _run_metadata(instance, run_id)
    return str(meta["model_version"]) if meta and "model_version" in meta else None


@dg.asset_check(asset="trained_model", blocking=True, description=(
    "Champion gate: judges the model this run trained (never another run's) and promotes it only if its "
    "holdout metrics are not worse than the current champion's on the same events, within the configured "
    "tolerance; otherwise records it as rejected with the reason. The decision is recorded once, with its "
    "run, in ml.model_decisions. Inference always uses the champion."
))
def champion_gate(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    from movierec_assets.ml.config import JobConfig  # the one source of the tolerance's default

    run_id = context.run.run_id
    version = candidate_of_run(context.instance, run_id)
    url = postgres.url()
    if version is None:
        return _no_candidate(context.instance, run_id, url)
    try:
        decision = promotion.decide(url, version, JobConfig.gate_tolerance, run_id=run_id)
    except KeyError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"reason": str(exc)})
    now = registry.current_champion(url)
    return dg.AssetCheckResult(
        passed=decision.decision == "promoted",
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "candidate": version,
            "decision": decision.decision,
            "reason": decision.reason,
            "decided_at": dg.MetadataValue.timestamp(decision.decided_at),
            "decided_by_run": decision.run_id or "",
            "champion": now.version if now else "none",
        },
    )


def _no_candidate(instance: dg.DagsterInstance, run_id: str, url: str) -> dg.AssetCheckResult:
    """The run trained no model: under policy `none` the champion keeps serving (passed, so the
    serving assets refresh over the new features); otherwise, or with no champion, failed."""
    meta = _run_metadata(instance, run_id) or {}
    champion = registry.current_champion(url)
    if meta.get("policy") == "none" and champion is not None:
        return dg.AssetCheckResult(passed=True, metadata={
            "decision": "kept", "reason": f"no new version ({meta.get('policy_reason')}); the champion keeps serving",
            "champion": champion.version})
    return dg.AssetCheckResult(passed=False, metadata={
        "reason": f"run {run_id} trained no model" + (f" ({meta['policy_reason']})" if "policy_reason" in meta else ""),
        "champion": champion.version if champion else "none"})
