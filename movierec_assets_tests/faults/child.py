"""A child process for the crash tests: imports what it needs, prints `go`, then does one load.

    python child.py days DAY[,DAY...] LANDING_DIR [--wait]
    python child.py history RATINGS_CSV
    python child.py train EPOCHS
    python child.py warm EPOCHS    (a warm update of the champion)

With --wait it reads one line from stdin after `go` (a start gun for concurrency tests).

The parent SIGKILLs it at a random moment after `go`; the database URL comes from the environment.
Run as a file (not `-m`), it skips `movierec_assets/__init__.py`, which builds the whole Dagster
definitions (2-4 s per child): the loaders it exercises are the same modules either way.
"""

from __future__ import annotations

import sys
import types
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _light_package() -> None:
    pkg = types.ModuleType("movierec_assets")
    pkg.__path__ = [str(REPO / "movierec_assets")]
    sys.modules.setdefault("movierec_assets", pkg)


def main(argv: list[str]) -> int:
    _light_package()
    from movierec_assets.db.connect import database_url

    url = database_url(start_embedded=False)
    kind = argv[0]
    if kind == "days":
        from movierec_assets.ingest.days import load_days

        _go()
        if "--wait" in argv:
            sys.stdin.readline()
        report = load_days(url, [date.fromisoformat(d) for d in argv[1].split(",")], Path(argv[2]))
        print(f"attempts={report.attempts} rows={report.rows_loaded} rejected={report.rows_rejected}", flush=True)
    elif kind == "history":
        from movierec_assets.ingest.load import replace_history
        from movierec_assets.ingest.validate import parse_ratings_file, validate_ratings

        _go()
        parsed = parse_ratings_file(Path(argv[1]))
        kept, invalid = validate_ratings(parsed.good, None)
        rejected = parsed.rejected.vstack(invalid)
        replace_history(url, kept, rejected, Path(argv[1]).name)
    elif kind == "train":
        _train(url, int(argv[1]))
    elif kind == "warm":
        _train(url, int(argv[1]), policy="warm")
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    print("done", flush=True)
    return 0


def _train(url: str, epochs: int, policy: str = "full") -> None:
    """trained_model's work (training_job.run): train with checkpoints, save, register a candidate."""
    import logging

    from movierec_assets.ml.train import TrainConfig
    from movierec_assets.ml.training_job import JobConfig, run

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    cfg = TrainConfig(epochs=epochs, batch_size=64, user_layers=(64,), movie_layers=(64,), embedding=16,
                      id_buckets=1000, patience=epochs, seed=7)
    _go()
    job = run(url, JobConfig(cfg, retrain_policy=policy, rank_users_cap=100, warm_epochs=epochs,
                             warm_history_sample=1e6), logging.getLogger("train"))
    print(f"initial_epoch={job.train.initial_epoch} epochs_run={job.train.epochs_run} "
          f"version={job.version.version} status={job.version.status}", flush=True)


def _go() -> None:
    print("go", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
