"""One training run in its own process, as a real run is: trained_model + champion_gate, materialized
through the persistent instance in $DAGSTER_HOME (postgres storage, concurrency pools).

`python gate_child.py OUT_JSON`; used by test_promotion.py to run two trainings at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg  # noqa: E402

from movierec_assets.assets.ml import champion_gate, trained_model  # noqa: E402
from movierec_assets.resources import PostgresResource  # noqa: E402

CONFIG = {"epochs": 1, "user_layers": [16], "movie_layers": [16], "embedding": 8, "batch_size": 2048,
          "rank_users_cap": 200, "retrain_policy": "full"}  # both runs train, on the same data


def main(out: Path) -> None:
    instance = dg.DagsterInstance.get()
    result = dg.materialize([trained_model, champion_gate], instance=instance,
                            resources={"postgres": PostgresResource()},
                            run_config={"ops": {"trained_model": {"config": CONFIG}}}, raise_on_error=False)
    if not result.success:  # say why on stderr: the parent test shows it
        for event in result.all_events:
            if event.is_failure:
                print(event.event_specific_data, file=sys.stderr)
    [materialization] = result.asset_materializations_for_node("trained_model")
    [check] = result.get_asset_check_evaluations()
    out.write_text(json.dumps({
        "run_id": result.run_id,
        "version": materialization.metadata["model_version"].value,
        "judged": check.metadata["candidate"].value,
        "decided_by_run": check.metadata["decided_by_run"].value,
        "passed": check.passed,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
