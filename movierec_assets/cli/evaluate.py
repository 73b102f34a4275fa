"""`movierec evaluate`: both evaluation protocols on any MovieLens-format directory.

Prints a compact table (method x protocol/group: Recall@10, NDCG@10, RMSE) and optionally writes
JSON: ``{"rows": [...], ...}`` with one row per (dataset, protocol, group, method) carrying
dataset, protocol, group, method, rmse, recall_at_10, ndcg_at_10, n_events, n_ranked_users and
params (the tuned baselines' chosen hyperparameters, else null). NaN metrics are written as null
(the ranking baselines have no RMSE; global_mean does not rank).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

FIELDS = ("dataset", "protocol", "group", "method", "rmse", "recall_at_10", "ndcg_at_10", "n_events",
          "n_ranked_users")
METHOD_ORDER = ("two_tower", "ease", "ials", "itemknn", "matrix_factorization", "bias", "popularity",
                "global_mean", "cold_start_fallback")
GROUP_ORDER = ("warm", "new", "cold", "all")


def quiet() -> None:
    """Keep TensorFlow's C++ and Python chatter off the console: its import prints absl/oneDNN
    notices straight to fd 2 whatever the log level, so fd 2 is muted for that import only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401  (the import being muted; TensorFlow only for this command)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_evaluate(data: Path, protocol: str = "AB", max_days: int = 0, name: str | None = None,
                 progress: bool = True, **config: Any) -> Any:
    """Load `data`, run the protocols; the rows as a polars DataFrame (see ml/evaluate.py)."""
    quiet()
    from movierec_assets.ml.evaluate import (  # TensorFlow: after quiet()
        EvalConfig,
        evaluate_dataset,
        load_dataset,
    )

    ds = load_dataset(data, name)
    return evaluate_dataset(ds, EvalConfig(max_days=max_days, progress=progress, **config), protocol)


def json_rows(table: Any) -> list[dict[str, Any]]:
    """The rows with NaN as None and params decoded into objects."""
    out = []
    for row in table.to_dicts():
        clean = {k: (None if isinstance(row.get(k), float) and math.isnan(row[k]) else row.get(k)) for k in FIELDS}
        params = row.get("params")
        clean["params"] = json.loads(params) if params else None
        out.append(clean)
    return out


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return " " * 20
    vals = [row["recall_at_10"], row["ndcg_at_10"], row["rmse"]]
    return " ".join("     –" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.4f}"
                    for v in vals)


def render_table(table: Any) -> str:
    """method x (protocol / group) with Recall@10, NDCG@10 and RMSE, plus the counts behind them."""
    rows = table.to_dicts()
    cols = sorted({(r["dataset"], r["protocol"], r["group"]) for r in rows},
                  key=lambda c: (c[0], c[1], GROUP_ORDER.index(c[2]) if c[2] in GROUP_ORDER else 9))
    methods = sorted({r["method"] for r in rows},
                     key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    at = {(r["dataset"], r["protocol"], r["group"], r["method"]): r for r in rows}
    width = max(len(m) for m in methods) + 2
    head = " " * width + "".join(f"{f'{p} / {g}':<22}" for _, p, g in cols)
    sub = " " * width + "".join(f"{'R@10   N@10   RMSE':<22}" for _ in cols)
    lines = [head, sub]
    lines += [f"{m:<{width}}" + "".join(f"{_cell(at.get((*c, m))):<22}" for c in cols) for m in methods]
    counts = []
    for c in cols:
        cell = [r for r in rows if (r["dataset"], r["protocol"], r["group"]) == c]
        counts.append(f"{max(r['n_ranked_users'] for r in cell)} q, {max(r['n_events'] for r in cell)} ev")
    lines.append(f"{'queries, events':<{width}}" + "".join(f"{s:<22}" for s in counts))
    return "\n".join(lines)


def write_json(table: Any, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "rows": json_rows(table)}, indent=2) + "\n")


@click.command()
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A MovieLens-format directory (ratings.csv, movies.csv, optional tags.csv).")
@click.option("--protocol", type=click.Choice(["A", "B", "AB"]), default="AB", show_default=True,
              help="A = production replay, B = per-user chronological holdout.")
@click.option("--max-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="Protocol A: evaluate at most this many future days, evenly spread (0 = every day).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the rows (one per dataset, protocol, group, method) to this JSON file.")
def evaluate(data: Path, protocol: str, max_days: int, json_out: Path | None) -> None:
    """Evaluate the two-tower model against bias, popularity, MF, item-kNN, EASE and iALS."""
    started = time.perf_counter()
    table = run_evaluate(data, protocol, max_days)
    seconds = time.perf_counter() - started
    click.echo(render_table(table))
    click.echo(f"{data.name}: protocol {protocol} in {seconds:.0f} s")
    if json_out is not None:
        write_json(table, json_out, {"data": data.name, "protocol": protocol, "max_days": max_days,
                                     "seconds": round(seconds, 1)})
        click.echo(f"wrote {json_out}")
