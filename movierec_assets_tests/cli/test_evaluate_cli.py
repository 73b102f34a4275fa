"""`movierec evaluate` end to end on a tiny hand-made MovieLens directory (real files, real model)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from movierec_assets.cli import main
from movierec_assets_tests.ml.tiny_movielens import write_tiny_movielens

FIELDS = {"dataset", "protocol", "group", "method", "rmse", "recall_at_10", "ndcg_at_10", "n_events",
          "n_ranked_users"}
METHODS = {"two_tower", "popularity", "itemknn", "ease", "ials", "bias", "matrix_factorization"}


def test_evaluate_writes_one_row_per_dataset_protocol_group_method(tmp_path: Path) -> None:
    data = write_tiny_movielens(tmp_path / "tiny-ml")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["evaluate", "--data", str(data), "--protocol", "AB", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(FIELDS <= set(r) for r in rows)
    keys = [(r["dataset"], r["protocol"], r["group"], r["method"]) for r in rows]
    assert len(keys) == len(set(keys)) and {r["dataset"] for r in rows} == {"tiny-ml"}
    for proto, group in (("A", "warm"), ("A", "new"), ("B", "all")):
        cell = {r["method"]: r for r in rows if (r["protocol"], r["group"]) == (proto, group)}
        assert cell["two_tower"]["n_ranked_users"] > 0, (proto, group)
        assert METHODS <= set(cell), (proto, group, sorted(cell))
        assert len({cell[m]["n_ranked_users"] for m in METHODS}) == 1  # same queries for every method
        for m in ("itemknn", "ease", "ials", "popularity"):
            assert cell[m]["rmse"] is None  # ranking only: NaN written as null
        for m in ("itemknn", "ease", "ials"):
            assert cell[m]["params"]["scheme"] in ("all", "liked")
        assert cell["two_tower"]["rmse"] is not None and cell["two_tower"]["n_events"] > 0
    assert {r["protocol"] for r in rows} == {"A", "B"}
    # The compact table: one line per method, Recall@10 / NDCG@10 / RMSE per protocol and group.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "A / warm" in line)
    assert "A / new" in lines[header] and "B / all" in lines[header]
    assert {line.split()[0] for line in lines[header + 2 :] if line.strip()} >= METHODS


def test_evaluate_rejects_a_directory_without_ratings(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path / "empty")])
    assert result.exit_code != 0 and "ratings.csv" in str(result.exception or result.output)
