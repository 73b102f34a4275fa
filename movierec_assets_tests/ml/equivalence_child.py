"""One training worker for the multi-worker equivalence test (and bench_workers): the public
training entry point (`ml.train.train`) with the project's config defaults, then the holdout report
(`ml.training_job.holdout_report`: RMSE and NDCG@10) on the chief.

`python equivalence_child.py RUN_DIR OUT_JSON EPOCHS`: the strategy comes from
MOVIEREC_TRAIN_STRATEGY and TF_CONFIG; each run needs a fresh interpreter (see distribute_child.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from movierec_assets.ml.config import JobConfig, TrainConfig  # noqa: E402
from movierec_assets.ml.train import train  # noqa: E402
from movierec_assets_tests.ml.planted import planted  # noqa: E402

DATA = {"n_users": 400, "n_movies": 150, "per_user": 40, "seed": 5}
SEED = 7


def main(run_dir: Path, out: Path, epochs: int) -> None:
    from movierec_assets.ml.scoreboard import MODEL
    from movierec_assets.ml.training_job import holdout_report

    features, ratings = planted(**DATA)
    cfg = replace(TrainConfig(), epochs=epochs, seed=SEED, patience=epochs)  # the defaults otherwise
    tr, va = ratings.time_split(cfg.val_fraction)
    result = train(tr, va, features, run_dir, cfg)
    report: dict[str, float] = {}
    if result.extra.get("chief", True):
        _, flat = holdout_report(result.model, features, tr, va, JobConfig().rank_users_cap, SEED)
        report = {"holdout_rmse": float(flat[f"{MODEL}_rmse"]), "ndcg_at_10": float(flat[f"{MODEL}_ndcg_at_10"])}
    out.write_text(json.dumps({
        **result.extra, **report,
        "epochs": result.epochs_run, "n_train": result.n_train, "seconds": result.seconds,
        "examples_per_second": result.examples_per_second, "val_rmse": result.val_rmse,
    }, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
