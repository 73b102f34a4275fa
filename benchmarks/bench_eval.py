"""Regenerate docs/model_evaluation.md: `movierec evaluate` (both protocols, every baseline) on
ml-latest-small and the synthetic default, plus the two-tower variants that chose the defaults.

    python -m benchmarks.bench_eval [--ml-small DIR] [--max-days 0] [--skip-variants]

A thin wrapper: each dataset goes through `movierec_assets.cli.evaluate.run_evaluate`, the same
code as `movierec evaluate --data DIR --json OUT`. Writes benchmarks/results/eval.json and
docs/model_evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import polars as pl  # noqa: E402

from benchmarks.paths import ml_small  # noqa: E402
from movierec_assets.cli.evaluate import json_rows, run_evaluate  # noqa: E402
from movierec_assets.ml.evaluate import EVAL_TRAIN, EvalConfig, evaluate_dataset, load_dataset, variants  # noqa: E402
from movierec_assets.ml.tuning import RANKERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "eval.json"
DOC = ROOT / "docs" / "model_evaluation.md"


def datasets(ml_small: Path | None, workdir: Path) -> dict[str, Path]:
    from movierec_assets.movielens.synth import DEFAULT_RATINGS, DEFAULT_SEED, write_synthetic

    out: dict[str, Path] = {}
    if ml_small and (ml_small / "ratings.csv").exists():
        out["ml-latest-small"] = ml_small
    synth = workdir / "synthetic-default"
    write_synthetic(synth, DEFAULT_RATINGS, DEFAULT_SEED)
    out["synthetic-default"] = synth
    return out


def fmt(x: object) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "–" if x != x else f"{x:.4f}"
    return str(x)


def markdown(table: pl.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.select(columns).iter_rows()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ml-small", type=Path, default=ml_small())  # $MOVIEREC_ML_SMALL or ../shared
    ap.add_argument("--max-days", type=int, default=0, help="Protocol A: sample this many days (0 = every day)")
    ap.add_argument("--skip-variants", action="store_true")
    ap.add_argument("--reuse-variants", action="store_true", help="keep the variant table of the last eval.json")
    ap.add_argument("--render-only", action="store_true", help="re-render the doc from the last eval.json")
    args = ap.parse_args()
    if args.render_only:
        data = json.loads(RESULTS.read_text())
        rows = [{**r, "params": json.dumps(r["params"], sort_keys=True) if r.get("params") else None}
                for r in data["table"]]
        DOC.write_text(render(pl.DataFrame(rows, infer_schema_length=None), pl.DataFrame(data["variants"]) if data["variants"] else None,
                              data.get("max_days", args.max_days)))
        return
    started = time.perf_counter()
    frames, variant_frames = [], []
    with tempfile.TemporaryDirectory(prefix="movierec-eval-") as tmp:
        for name, directory in datasets(args.ml_small, Path(tmp)).items():
            t0 = time.perf_counter()
            main_table = run_evaluate(directory, "AB", args.max_days, name, progress=False)
            frames.append(main_table)
            print(f"{name}: both protocols in {time.perf_counter() - t0:.0f} s", flush=True)
            if args.skip_variants or args.reuse_variants:
                continue
            ds = load_dataset(directory, name)
            cfg = EvalConfig(train=EVAL_TRAIN, max_days=args.max_days, rankers=False)
            for label, tc in variants(EVAL_TRAIN).items():
                if tc == EVAL_TRAIN:  # the default: already in the main table
                    b = main_table.filter(pl.col("protocol") == "B")
                else:
                    b = evaluate_dataset(ds, replace(cfg, train=tc), "B")
                variant_frames.append(b.filter(pl.col("method") == "two_tower").with_columns(variant=pl.lit(label)))
                print(f"  variant {label}: done", flush=True)
    table = pl.concat(frames)
    if args.reuse_variants and RESULTS.exists():
        variant_frames = [pl.DataFrame(json.loads(RESULTS.read_text())["variants"])]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"table": json_rows(table),
                                   "variants": pl.concat(variant_frames).to_dicts() if variant_frames else [],
                                   "max_days": args.max_days, "seconds": time.perf_counter() - started}, indent=2))
    DOC.write_text(render(table, pl.concat(variant_frames) if variant_frames else None, args.max_days))
    print(f"wrote {RESULTS} and {DOC} in {time.perf_counter() - started:.0f} s")


def render(table: pl.DataFrame, variant_table: pl.DataFrame | None, max_days: int) -> str:
    cols = ["dataset", "protocol", "group", "method", "rmse", "recall_at_10", "ndcg_at_10", "n_events", "n_ranked_users"]
    order = {"warm": 0, "new": 1, "cold": 2, "all": 3}
    table = table.sort("dataset", "protocol", pl.col("group").replace_strict(order, default=9), "method")
    days = (f"up to {max_days} future days with ratings (evenly spread)" if max_days
            else "every future day on which a user with an earlier rating rates")
    parts = [HEADER.format(days=days), markdown(table, cols), PARAMS_HEADER, chosen_params(table),
             TARGETS_HEADER, targets(table)]
    if variant_table is not None:
        parts += [VARIANTS_HEADER, markdown(variant_table.sort("dataset", "variant"),
                                            ["dataset", "variant", "rmse", "recall_at_10", "ndcg_at_10", "n_events"])]
    parts.append(FOOTER)
    return "\n\n".join(parts) + "\n"


HEADER = """# Model evaluation

Generated by `python -m benchmarks.bench_eval` (see `movierec_assets/ml/evaluate.py` for the exact
protocols, `movierec_assets/ml/metrics.py` for the metric definitions). Every method in a block is
scored on exactly the same events; `n_events` counts the rating events behind RMSE and
`n_ranked_users` the (user, day) ranking queries behind Recall@10 / NDCG@10 (queries with at least
one relevant item: a held-out rating >= 4 on a movie the user had not rated before).

- **Protocol A, production replay**: trained through the split's cutoff day (the default history
  fraction); for {days}, user and movie features are refreshed through the previous day, with no
  retraining, and the day's ratings are predicted.
  `warm` = users in the training data, `new` = first rating after the cutoff but before that day,
  `cold` = no rating before that day (served by the cold-start fallback: movie bias for ratings,
  popularity for top-N). Baselines are fitted once at the cutoff, like the model.
- **Protocol B, per-user chronological holdout**: the last 20% of each user's ratings (users with
  >= 10 ratings); features and every fit use only the remaining ratings.
- Baselines: global mean; regularised user + movie bias (ALS-style closed form); popularity
  (count of ratings >= 4); matrix factorisation (biases + rank-16 weighted-lambda ALS); and the
  ranking baselines **item-kNN** (shrunk cosine, top-k neighbours), **EASE** (closed form) and
  **iALS** (the `implicit` library). Those three rank only (rmse `–`). They are fitted once per
  training run and score each user from that user's ratings so far, with no refit: in Protocol A,
  the ratings before the day (iALS folds the user in by one least-squares solve against its fixed
  item factors); in Protocol B, the non-held-out ratings. Their hyperparameters, including which
  ratings count as interactions (all, or only >= 4), are tuned on an inner time-ordered validation
  split of the training ratings only (Protocol B: each training user's newest 20%; A: the newest
  20% of the history), then refitted on all training ratings (chosen values below). EASE and
  item-kNN use at most the 20,000 most-rated movies (all of them on these datasets).
- The model ranks by cosine + its ranking prior (`movierec_assets/ml/ranking.py`): a linear term
  over its own movie features (log rating counts, all-time and 90-day, and the shrunk mean), with
  weights fitted on the training run's time-ordered validation split (never on these events).
- `synthetic-default` is `movierec data synth` at its defaults (100k ratings, seed 42), whose users
  choose what to rate by popularity *and* taste (see `movierec_assets/movielens/synth.py`).

## Results (default model)"""

RANKING_BASELINES = ("popularity", *RANKERS)


def targets(table: pl.DataFrame) -> str:
    """The issue's quality targets, checked against the table above (no hand-written verdicts)."""

    def cell(ds: str, proto: str, group: str, method: str, col: str) -> float:
        row = table.filter((pl.col("dataset") == ds) & (pl.col("protocol") == proto) & (pl.col("group") == group)
                           & (pl.col("method") == method))
        return float(row[col][0]) if row.height else float("nan")

    lines = ["| dataset | protocol / group | target | two-tower | baseline | met |", "|---|---|---|---|---|---|"]
    for ds in table["dataset"].unique(maintain_order=True).to_list():
        for proto, groups in (("A", ["warm", "new"]), ("B", ["all"])):
            for g in groups:
                checks = [("RMSE < bias", "rmse", "bias", -1)]
                # Issue 17: above every ranking baseline that runs without retraining.
                checks += [(f"{name} > {base}", col, base, 1) for base in RANKING_BASELINES
                           for name, col in (("Recall@10", "recall_at_10"), ("NDCG@10", "ndcg_at_10"))]
                for label, col, base, sign in checks:
                    ours, theirs = cell(ds, proto, g, "two_tower", col), cell(ds, proto, g, base, col)
                    met = "yes" if sign * (ours - theirs) > 0 else "**no**"
                    lines.append(f"| {ds} | {proto} / {g} | {label} | {fmt(ours)} | {fmt(theirs)} | {met} |")
    return "\n".join(lines)


TARGETS_HEADER = "## Quality targets (computed from the table above)"

PARAMS_HEADER = """## Ranking baselines: chosen hyperparameters

Each method's whole grid is walked on the inner split (`movierec_assets/ml/tuning.py`), so the choice does not depend on the machine's load;
`val_ndcg_at_10` is the inner validation split's NDCG@10, `candidates` how many were tried."""


def chosen_params(table: pl.DataFrame) -> str:
    lines = ["| dataset | protocol | method | params |", "|---|---|---|---|"]
    rows = table.filter(pl.col("params").is_not_null()).unique(["dataset", "protocol", "method"], keep="first")
    for r in rows.sort("dataset", "protocol", "method").iter_rows(named=True):
        shown = ", ".join(f"{k}={v}" for k, v in json.loads(r["params"]).items())
        lines.append(f"| {r['dataset']} | {r['protocol']} | {r['method']} | {shown} |")
    return "\n".join(lines)

VARIANTS_HEADER = """## The comparison that chose the defaults (Protocol B, two-tower only)

Same events, same training budget (12 epochs max, early stopping); only the model options change.
RMSE barely moves between variants; the retrieval loss and the ranking prior are what lift top-N,
and ID embeddings (a 20,000 x 16 hashed table per tower) do not pay for themselves. So the default
is **retrieval loss on, ranking prior on, ID embeddings off** (`id_buckets=0`; set `id_buckets`
to enable them)."""

FOOTER = """Notes:
- The retrieval loss is an in-batch sampled softmax over liked pairs (>= 4 stars) with logQ
  correction (weight 0.1, temperature 0.05). Without it, the rating-only model ranks obscure,
  highly rated movies first and loses to popularity on top-N.
- The ranking prior exists because top-N is judged on which movies users go on to rate, and that
  is driven by exposure as much as by taste. The cosine alone (`+ retrieval loss`) already beats
  popularity in Protocol B on ml-latest-small, but not on the synthetic set; with the prior it
  wins on both. The prior is a linear term over the movie tower's own features, so it moves with
  the daily feature refresh and needs no retraining; its weights are stored in the model
  (`rank_weights`), served with the embeddings (`ml.movie_embeddings.rank_bias`), and reported in
  `trained_model`'s metadata.
- Where the two-tower stands (issue 17): it beats bias on RMSE everywhere and popularity on top-N
  everywhere, and in Protocol A's warm groups it also beats item-kNN, EASE and iALS on
  ml-latest-small. It does not beat EASE or iALS in Protocol B or for Protocol A's new users. The
  history-pooling user tower (`history_len=50`) is implemented, served and tested but off by
  default: on the inner validation split its effect was within the seed spread (~0.02 NDCG@10),
  at 2.6x the training time, and on the test split it scored lower (3 seeds, ml-latest-small
  Protocol B: NDCG@10 0.090, range 0.082 to 0.095, against 0.107 without it). The likely cause is
  that training examples see user aggregates computed over all training ratings (the event's own
  rating and later ones included) beside a causal history: point-in-time user features are next.
- History of the synthetic set: it used to draw which movies a user rates from popularity alone,
  so that no recommender could learn exposure from taste. It now follows taste too, as
  MovieLens users do (they rate what they chose to watch). On the old generator, the model with
  the prior tied popularity in Protocol B; it did not beat it."""


if __name__ == "__main__":
    main()
