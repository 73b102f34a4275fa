"""Protocol A for the continual replay: score one day's events with the model being served, before
that day is loaded, on the features being served (`bench_continual`'s scoring half).

The metrics are `ml/evaluate.py`'s own: `_score_day` on a `Replay` whose feature rows come from
the database's feature tables (what serving reads, refreshed through the day before) and whose
model and scaling stats are the registry champion's, with its own `scaling_stats.parquet`.
Groups as in Protocol A: `warm` = users with a history rating (at or before the split's cutoff),
`new` = first rating after the cutoff but before the day; users with no earlier rating are not
ranked (the cold-start fallback serves them, whatever the policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from movierec_assets.features.store import read_feature_tables
from movierec_assets.ml import feature_io, registry
from movierec_assets.ml.evaluate import Dataset, Replay, _score_day
from movierec_assets.ml.pipeline import FeatureMatrices
from movierec_assets.ml.scoreboard import MODEL, Baselines, Scoreboard, Tally

GROUPS = ("warm", "new")
REFERENCE = "popularity"  # fitted once at the cutoff, like `none`'s model: a drift yardstick


@dataclass
class ServedReplay(Replay):
    """`Replay` with the served state: the champion's model and stats, the stored feature rows."""

    url: str = ""

    def features(self, start: datetime, users: pl.DataFrame) -> FeatureMatrices:
        stored_users, stored_movies = read_feature_tables(self.url)
        rows = stored_users.join(users, on="user_id", how="semi")
        if rows.height != users.height:  # `_score_day` indexes every user's row: none may be missing
            raise RuntimeError(f"{users.height - rows.height} scored users have no row in features.user_features")
        fm = feature_io.matrices(rows, stored_movies, self.stats)
        if not np.array_equal(fm.movie_ids, self.ds.movie_ids):
            raise RuntimeError("features.movie_features does not hold exactly the dataset's movies")
        return fm

    def serve(self, model: Any, stats: pl.DataFrame) -> None:
        """Switch to another champion: its movie embeddings are recomputed at the next day."""
        self.model, self.stats, self.movie_matrix, self.movie_emb = model, stats, None, None


@dataclass
class DayScorer:
    """Scores each replayed day with whatever the registry serves when the day is scored."""

    ds: Dataset
    url: str
    cutoff_day: date
    served: str | None = None
    replay: ServedReplay | None = None
    base: Baselines = field(init=False)
    warm: np.ndarray = field(init=False)
    first_day: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        end = datetime.combine(self.cutoff_day + timedelta(days=1), time.min, UTC)
        history = self.ds.ratings.filter(pl.col("rated_at") < end)
        u, m, r = self.ds.idx(history)
        self.base = Baselines.fit(u, m, r, len(self.ds.user_ids), len(self.ds.movie_ids))
        self.warm = np.zeros(len(self.ds.user_ids), bool)
        self.warm[u] = True
        self.first_day = self.ds.ratings.group_by("user_id").agg(pl.col("rated_at").min().dt.date().alias("first"))

    def _follow_champion(self) -> str:
        champion = registry.current_champion(self.url)
        if champion is None:
            raise RuntimeError("no champion is served")
        if champion.version != self.served:
            model = registry.load_model(champion.path)
            stats = feature_io.load_stats(Path(champion.path))
            if self.replay is None:
                self.replay = ServedReplay(self.ds, model, stats, url=self.url)
            else:
                self.replay.serve(model, stats)
            self.served = champion.version
        return champion.version

    def score(self, day: date) -> dict[str, Any]:
        """Day `day`'s events of users with an earlier rating, by the model served now."""
        version = self._follow_champion()
        events = self.ds.ratings.filter(pl.col("rated_at").dt.date() == day)
        known = events.join(self.first_day.filter(pl.col("first") < day), on="user_id", how="semi")
        board = Scoreboard()
        if not known.is_empty():
            assert self.replay is not None
            _score_day(board, self.replay, datetime.combine(day, time.min, UTC), known, self.base, self.warm)
        return {"served_version": version, "events": events.height, "known_events": known.height,
                **metrics(board)}


def metrics(board: Scoreboard) -> dict[str, Any]:
    """`{group}_{metric}` for the model (and the popularity reference), plus `all_*` over both."""
    out: dict[str, Any] = {}
    for method, prefix in ((MODEL, ""), (REFERENCE, f"{REFERENCE}_")):
        cells = [board.cells.get((g, method), Tally()) for g in GROUPS]
        total = Tally(*(sum(getattr(c, f) for c in cells) for f in ("sse", "n_events", "recall_sum",
                                                                      "ndcg_sum", "n_queries")))
        for group, cell in (*zip(GROUPS, cells, strict=True), ("all", total)):
            row = cell.row()
            for key in ("rmse", "recall_at_10", "ndcg_at_10", "n_events", "n_ranked_users"):
                if method == REFERENCE and key in ("rmse", "n_events"):
                    continue  # popularity does not predict ratings
                out[f"{prefix}{group}_{key}"] = _finite(row[key])
    return out


def _finite(value: float | int) -> float | int | None:
    """NaN (a group with no event that day) as None, so the JSON stays valid."""
    return None if isinstance(value, float) and value != value else value
