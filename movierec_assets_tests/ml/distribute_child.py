"""One training worker, run as its own process by test_distribute.py.

`python distribute_child.py RUN_DIR OUT_JSON`: the strategy comes from MOVIEREC_TRAIN_STRATEGY and
TF_CONFIG, as in a real deployment. MultiWorkerMirroredStrategy must be created before TensorFlow
runs anything else in the process, and only once, so each run gets a fresh interpreter.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from movierec_assets.ml.train import TrainConfig, train  # noqa: E402
from movierec_assets_tests.ml.planted import planted  # noqa: E402


def main(run_dir: Path, out: Path) -> None:
    import numpy as np

    features, ratings = planted(n_users=60, n_movies=40, per_user=10, seed=3)
    tr, va = ratings.time_split(0.2)
    cfg = TrainConfig(epochs=2, batch_size=64, user_layers=(16,), movie_layers=(16,), embedding=8, patience=5)
    result = train(tr, va, features, run_dir, cfg)
    weights = b"".join(np.asarray(w, np.float32).tobytes() for w in result.model.get_weights())
    out.write_text(json.dumps({
        **result.extra,  # strategy, replicas, chief: as train() saw them
        "epochs": result.epochs_run,
        "loss": result.history["loss"],
        "val_rmse": result.val_rmse,
        "weights_sha": hashlib.sha256(weights).hexdigest(),
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
