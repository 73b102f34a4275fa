"""The continual replay's summary: per-policy medians, `none`'s decay slope, warm vs full, the
invariants, the printed table and the PNG (`bench_continual`'s reporting half)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

QUALITY = ("warm_ndcg_at_10", "warm_recall_at_10", "new_ndcg_at_10", "new_recall_at_10", "all_ndcg_at_10",
           "all_rmse")
COLUMNS = ["policy", "days", "scored_days", "warm_ndcg_at_10", "warm_recall_at_10", "new_ndcg_at_10",
           "new_recall_at_10", "all_rmse", "pooled_ndcg_at_10", "pooled_recall_at_10", "pooled_rmse", "ranked_users",
           "train_cpu_s_per_day", "train_s_per_day", "day_s", "versions_served", "rejected"]


def _median(values: list[Any]) -> float:
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(kept) if kept else float("nan")


def slope(days: list[dict[str, Any]], key: str = "all_ndcg_at_10") -> float:
    """Least-squares slope of `key` per day index, over the days that have a value."""
    points = [(d["day_index"], d[key]) for d in days if d.get(key) is not None]
    if len(points) < 2:
        return float("nan")
    x, y = np.array(points, dtype=np.float64).T
    return float(np.polyfit(x, y, 1)[0])


def pooled(days: list[dict[str, Any]]) -> dict[str, float]:
    """The window as one query set (every ranked user and every event of every day weighs the
    same): where most days hold a handful of events, per-day medians are mostly 0 or undefined."""
    users = sum(d["all_n_ranked_users"] for d in days)
    events = sum(d["all_n_events"] for d in days if d.get("all_rmse") is not None)

    def mean(key: str) -> float:
        return sum(d[key] * d["all_n_ranked_users"] for d in days if d["all_n_ranked_users"]) / users if users \
            else float("nan")

    sse = sum(d["all_rmse"] ** 2 * d["all_n_events"] for d in days if d.get("all_rmse") is not None)
    return {"pooled_ndcg_at_10": mean("all_ndcg_at_10"), "pooled_recall_at_10": mean("all_recall_at_10"),
            "pooled_rmse": math.sqrt(sse / events) if events else float("nan"), "ranked_users": users}


def policy_row(result: dict[str, Any]) -> dict[str, Any]:
    days = result["days"]
    row: dict[str, Any] = {"policy": result["policy"], "days": len(days),
                           "scored_days": sum(d["all_n_ranked_users"] > 0 for d in days)}
    row |= {key: _median([d[key] for d in days]) for key in QUALITY}
    row |= pooled(days)
    row["train_cpu_s_per_day"] = _median([d["train_cpu_seconds"] for d in days])
    row["train_s_per_day"] = _median([d["train_seconds"] for d in days])
    row["day_s"] = _median([d["day_seconds"] for d in days])
    row["versions_served"] = len({d["served_version"] for d in days} | {d["served_after"] for d in days})
    row["rejected"] = len(result["rejected_versions"])
    row["ndcg_slope_per_day"] = slope(days)
    return row


def _ratio(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-policy rows, the cross-policy figures the issue's targets name, and the invariants."""
    rows = {r["policy"]: policy_row(r) for r in results}
    out: dict[str, Any] = {"policies": list(rows.values())}
    if "none" in rows:
        out["none_ndcg_slope_per_day"] = rows["none"]["ndcg_slope_per_day"]
    if "warm" in rows and "full" in rows:
        w, f = rows["warm"], rows["full"]
        out["warm_over_full_ndcg"] = _ratio(w["all_ndcg_at_10"], f["all_ndcg_at_10"])
        out["warm_over_full_ndcg_pooled"] = _ratio(w["pooled_ndcg_at_10"], f["pooled_ndcg_at_10"])
        out["warm_over_full_cpu"] = _ratio(w["train_cpu_s_per_day"], f["train_cpu_s_per_day"])
        out["targets"] = {"warm_within_2pct_of_full_ndcg": out["warm_over_full_ndcg"] >= 0.98,
                          "warm_within_2pct_of_full_ndcg_pooled": out["warm_over_full_ndcg_pooled"] >= 0.98,
                          "warm_cpu_le_one_fifth_of_full": out["warm_over_full_cpu"] <= 0.2}
    out["invariants"] = invariants(results)
    return out


def invariants(results: list[dict[str, Any]]) -> dict[str, bool]:
    """What every run must hold (bench_continual asserts them too)."""
    served_ok = all(d["served_version"] not in r["rejected_versions"] and d["served_after"] not in r["rejected_versions"]
                    for r in results for d in r["days"])
    out = {"never_served_a_rejected_model": served_ok}
    for r in results:
        if r["policy"] == "none":
            out["none_kept_its_initial_model"] = all(
                d["served_version"] == d["served_after"] == r["initial_version"] for d in r["days"])
    return out


def json_safe(value: Any) -> Any:
    """NaN (no scored day, no warm policy) as null, recursively: the JSON stays standard."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def table_text(summary: dict[str, Any]) -> str:
    import polars as pl

    from benchmarks.bench_eval import markdown

    frame = pl.DataFrame(summary["policies"], infer_schema_length=None)
    lines = [markdown(frame, COLUMNS), ""]
    if "none_ndcg_slope_per_day" in summary:
        lines.append(f"none: NDCG@10 slope {summary['none_ndcg_slope_per_day']:+.5f} per day (least squares)")
    if "warm_over_full_ndcg" in summary:
        lines.append(f"warm / full: NDCG@10 x{summary['warm_over_full_ndcg']:.3f} (median of days), "
                     f"x{summary['warm_over_full_ndcg_pooled']:.3f} (pooled over the window), training CPU "
                     f"x{summary['warm_over_full_cpu']:.3f} (targets: >= 0.98, <= 0.2)")
    lines += [f"{k}: {'yes' if ok else 'NO'}" for k, ok in summary["invariants"].items()]
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], out: Path, title: str) -> None:
    """Quality per day, one line per policy; training CPU seconds per day below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), dpi=80, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    try:
        for r in results:
            days = r["days"]
            scored = [(d["day_index"], d["all_ndcg_at_10"]) for d in days if d["all_ndcg_at_10"] is not None]
            if scored:
                top.plot(*zip(*scored, strict=True), marker="o", ms=3, lw=1.2, label=r["policy"])
            bottom.plot([d["day_index"] for d in days], [d["train_cpu_seconds"] for d in days], marker=".",
                        lw=1.2, label=r["policy"])
        top.set_ylabel("NDCG@10, next day")
        top.set_title(title, fontsize=10)
        bottom.set_ylabel("training CPU s")
        bottom.set_xlabel("replayed day")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
