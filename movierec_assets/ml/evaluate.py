"""Honest temporal evaluation of the two-tower model against baselines, on the same events.

Protocol A (production replay): train through the cutoff day; for each evaluated future day d,
refresh features through day d-1 (no retraining) and predict day d's ratings of every user with a
rating before d: `warm` users (in the training data), `new` users (first rating after the cutoff),
and users with no prior rating at all (`cold`, served by the cold-start fallback).
Protocol B (per-user chronological holdout): the last 20% of each user's ratings, for users with at
least 10 ratings; features and every fit use only the remaining ratings.

Regenerate the README table with `python -m benchmarks.bench_eval` (writes docs/model_evaluation.md).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from movierec_assets.features import IncrementalFeatures, compute_movie_features, compute_user_features
from movierec_assets.features.compute import to_microseconds
from movierec_assets.ml import feature_io
from movierec_assets.ml.history import histories_for_users
from movierec_assets.ml.interactions import rating_matrix
from movierec_assets.ml.metrics import K
from movierec_assets.ml.pipeline import FeatureMatrices, arrays_from_frame, index_of
from movierec_assets.ml.scoreboard import FALLBACK, MODEL, Baselines, History, Scoreboard, model_methods
from movierec_assets.ml.train import TrainConfig, train
from movierec_assets.ml.tuning import RANKERS, fit_rankers, inner_split
from movierec_assets.ml.two_tower import embed, embed_users, ranking_bias, rating_map
from movierec_assets.movielens.source import read_movies, read_ratings, read_tags
from movierec_assets.movielens.split import compute_split

EVAL_TRAIN = TrainConfig()  # the production defaults (ml/config.py): evaluate what is trained


@dataclass(frozen=True)
class EvalConfig:
    train: TrainConfig = EVAL_TRAIN
    max_days: int = 0  # Protocol A: at most this many evaluated days, evenly spread (0 = every day)
    holdout_fraction: float = 0.2
    min_user_ratings: int = 10
    k: int = K
    rankers: bool = True  # item-kNN, EASE and iALS beside bias / popularity / MF
    ranker_max_candidates: int = 0  # grid candidates tuned per ranking baseline and protocol (0 = all)
    max_items: int = 20_000  # EASE / item-kNN item set: the most-rated movies, at most this many
    inner_fraction: float = 0.2  # the inner validation split the ranking baselines are tuned on
    progress: bool = False  # tqdm bars over the fits and Protocol A's days (on stderr)


@dataclass
class Dataset:
    """A whole dataset in memory (contract dtypes) plus its global index spaces."""

    name: str
    ratings: pl.DataFrame
    movies: pl.DataFrame
    tags: pl.DataFrame | None
    user_ids: np.ndarray = field(init=False)
    movie_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        # Ratings of movies missing from the catalogue cannot get movie features: dropped.
        self.ratings = self.ratings.join(self.movies.select("movie_id"), on="movie_id", how="semi").sort(
            "rated_at", "user_id", "movie_id"
        )
        self.user_ids = np.unique(self.ratings["user_id"].to_numpy()).astype(np.int32)
        self.movie_ids = np.sort(self.movies["movie_id"].to_numpy()).astype(np.int32)

    def idx(self, df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (index_of(self.user_ids, df["user_id"].to_numpy()), index_of(self.movie_ids, df["movie_id"].to_numpy()),
                df["rating"].to_numpy().astype(np.float64))


def features_as_of(ds: Dataset, ratings: pl.DataFrame, as_of: datetime | None) -> tuple[pl.DataFrame, pl.DataFrame]:

    tags = ds.tags.lazy() if ds.tags is not None else None
    return (compute_user_features(ratings.lazy(), ds.movies.lazy(), as_of=as_of),
            compute_movie_features(ratings.lazy(), ds.movies.lazy(), tags, as_of=as_of))


def fit_model(train_ratings: pl.DataFrame, fm: FeatureMatrices, cfg: TrainConfig) -> Any:

    arrays = arrays_from_frame(train_ratings, fm)
    tr, va = arrays.time_split(cfg.val_fraction)
    with tempfile.TemporaryDirectory(prefix="movierec-eval-") as run:
        return train(tr, va, fm, Path(run), cfg).model


def embeddings(model: Any, fm: FeatureMatrices, user_rows: np.ndarray | None = None,
               prior: pl.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user embeddings, movie embeddings, per-movie ranking bias) from the current features.

    `prior`: the evaluated users' ratings so far (user_id, movie_id, rating, rated_at); a
    history-aware model pools each user's newest ones. Without it, users get features only.
    """

    rows = np.arange(len(fm.user_ids)) if user_rows is None else user_rows
    hist = None
    if prior is not None and getattr(model, "uses_history", False):
        hist = histories_for_users(prior, fm.user_ids[rows], model.hparams.history_len, fm.movie_ids)
    users = embed_users(model, fm.user_matrix[rows], fm.user_ids[rows], hist)
    return users, embed(model.movie_net, fm.movie_matrix, fm.movie_ids), ranking_bias(model, fm.movie_matrix)


def _pairs(ds: Dataset, df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    u, m, _ = ds.idx(df)
    return u, m


def protocol_b(ds: Dataset, cfg: EvalConfig) -> list[dict[str, object]]:
    """Per-user chronological holdout; features and fits see only the non-held-out ratings."""

    ranked = ds.ratings.with_columns(
        pl.int_range(pl.len()).over("user_id", order_by=["rated_at", "movie_id"]).alias("_i"),
        pl.len().over("user_id").alias("_n"),
    )
    n_hold = (pl.col("_n") * cfg.holdout_fraction).floor().clip(lower_bound=1)
    held_mask = (pl.col("_n") >= cfg.min_user_ratings) & (pl.col("_i") >= pl.col("_n") - n_hold)
    held = ranked.filter(held_mask).drop("_i", "_n")
    train_df = ranked.filter(~held_mask).drop("_i", "_n")
    users_df, movies_df = features_as_of(ds, train_df, None)
    stats = feature_io.stats_from_frames(users_df, movies_df)
    fm = feature_io.matrices(users_df, movies_df, stats)
    bar = fits_bar(cfg, "B")
    model = fit_model(train_df, fm, cfg.train)
    u_emb, m_emb, m_bias = embeddings(model, fm, prior=train_df)
    # Every held-out user has training ratings, so has a feature row.
    pos = np.full(len(ds.user_ids), -1)
    pos[index_of(ds.user_ids, fm.user_ids)] = np.arange(len(fm.user_ids))
    tu, tm, _ = ds.idx(train_df)
    base = fit_baselines(ds, train_df, "B", cfg, bar)
    board = Scoreboard()
    events, seen = ds.idx(held), (tu, tm)
    so_far = History.build(train_df, ds.user_ids, ds.movie_ids)  # the non-held-out ratings
    board.add_all("all", {MODEL: model_methods(u_emb, pos, m_emb, *rating_map(model), m_bias),
                          **base.methods(len(ds.movie_ids), so_far)}, events, seen)
    return board.rows(base.params(), dataset=ds.name, protocol="B")


def fits_bar(cfg: EvalConfig, protocol: str) -> Any:
    """A progress bar over one protocol's fits: the two-tower, bias/popularity/MF, each ranker."""


    bar = tqdm(total=2 + (len(RANKERS) if cfg.rankers else 0), desc=f"protocol {protocol} fits",
               unit="fit", disable=not cfg.progress, leave=False)
    bar.set_postfix_str("two_tower")
    return bar


def fit_baselines(ds: Dataset, train_df: pl.DataFrame, protocol: str, cfg: EvalConfig, bar: Any) -> Baselines:
    """Every baseline on the training ratings `train_df`; the ranking baselines tuned on an inner
    split of those same ratings (`tuning.inner_split`), never on the test events."""

    bar.update()  # the two-tower, fitted just before
    bar.set_postfix_str("bias, popularity, matrix_factorization")
    u, m, r = ds.idx(train_df)
    shape = (len(ds.user_ids), len(ds.movie_ids))
    base = Baselines.fit(u, m, r, *shape)
    bar.update()
    if cfg.rankers:
        t = train_df["rated_at"].dt.epoch("us").to_numpy()
        split = inner_split(u, m, r, t, shape, protocol, cfg.inner_fraction, cfg.min_user_ratings)

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(0 if name == "itemknn" else 1)

        base.rankers = fit_rankers(rating_matrix(u, m, r, shape), split, cfg.ranker_max_candidates, cfg.max_items, step)
        bar.update()
    bar.close()
    return base


def days_bar(cfg: EvalConfig, days: list[date]) -> Any:

    return tqdm(days, desc="protocol A days", unit="day", disable=not cfg.progress, leave=False)


def _eval_days(future: pl.DataFrame, first_day: pl.DataFrame, max_days: int) -> list[date]:
    """Days where at least one user with an earlier rating rates (the days Protocol A is about),
    evenly spread when there are more than `max_days`."""
    known = future.with_columns(day=pl.col("rated_at").dt.date()).join(first_day, on="user_id")
    days = known.filter(pl.col("first") < pl.col("day")).select(pl.col("day").unique().sort()).to_series().to_list()
    if not max_days or len(days) <= max_days:
        return days
    pick = np.unique(np.linspace(0, len(days) - 1, max_days).round().astype(int))
    return [days[i] for i in pick]


@dataclass
class Replay:
    """Protocol A's running state between evaluated days: features folded in day by day (exact
    integer sums, `features.IncrementalFeatures`) and the movie embeddings of the last refresh.

    Each refresh adds only the ratings since the previous one and re-embeds only the movies whose
    scaled features changed (all of them on the first day); the users embedded are the day's.
    The frames equal `features_as_of` over every rating before the day (tested).
    """

    ds: Dataset
    model: Any
    stats: pl.DataFrame
    state: Any = None  # IncrementalFeatures over ds.ratings[:added]
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    added: int = 0
    movie_matrix: np.ndarray | None = None
    movie_emb: np.ndarray | None = None
    changed: list[int] = field(default_factory=list)  # movies re-embedded per refresh

    def __post_init__(self) -> None:

        self.state = IncrementalFeatures(self.ds.movies, self.ds.tags)
        self.times = self.ds.ratings["rated_at"].dt.cast_time_unit("us").to_physical().to_numpy()

    def prior(self, start: datetime) -> pl.DataFrame:
        """Every rating before `start` (ds.ratings is time-sorted), the new ones folded in."""

        end = int(np.searchsorted(self.times, to_microseconds(start), side="left"))
        if end < self.added:
            raise ValueError("Protocol A days must be replayed in order")
        if end > self.added:
            self.state.add(self.ds.ratings.slice(self.added, end - self.added))
            self.added = end
        return self.ds.ratings.slice(0, self.added)

    def frames(self, start: datetime, users: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Feature frames through `start` - 1 us (call `prior(start)` first): the `users`
        (user_id) rows and every movie, as `features_as_of(ds, prior, start - 1 us)` gives them."""
        as_of = start - timedelta(microseconds=1)
        return self.state.user_features(as_of, users), self.state.movie_features(as_of)

    def features(self, start: datetime, users: pl.DataFrame) -> FeatureMatrices:
        """`frames`, scaled with the training stats."""
        return feature_io.matrices(*self.frames(start, users), self.stats)

    def embed(self, fm: FeatureMatrices, active: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`embeddings(model, fm, prior=active)`, re-embedding only the movie rows whose scaled
        features changed since the last refresh (every row on the first day)."""

        same = self.movie_matrix is not None and self.movie_matrix.shape == fm.movie_matrix.shape
        rows = (np.flatnonzero((fm.movie_matrix != self.movie_matrix).any(axis=1)) if same
                else np.arange(len(fm.movie_ids)))
        self.movie_matrix = fm.movie_matrix
        self.changed.append(int(rows.size))
        if rows.size == len(fm.movie_ids):  # the usual case: the shrunk means' prior moves daily
            users, self.movie_emb, bias = embeddings(self.model, fm, prior=active)
            return users, self.movie_emb, bias
        assert self.movie_emb is not None
        if rows.size:
            self.movie_emb = self.movie_emb.copy()
            self.movie_emb[rows] = embed(self.model.movie_net, fm.movie_matrix[rows], fm.movie_ids[rows])
        return self._users(fm, active), self.movie_emb, ranking_bias(self.model, fm.movie_matrix)

    def _users(self, fm: FeatureMatrices, active: pl.DataFrame) -> np.ndarray:
        """The user part of `embeddings(model, fm, prior=active)`."""

        hist = None
        if getattr(self.model, "uses_history", False):
            hist = histories_for_users(active, fm.user_ids, self.model.hparams.history_len, fm.movie_ids)
        return embed_users(self.model, fm.user_matrix, fm.user_ids, hist)


def protocol_a(ds: Dataset, cutoff_day: date, cfg: EvalConfig) -> list[dict[str, object]]:
    """Production replay: train through `cutoff_day`, then refresh features day by day, no retraining."""
    end_of = datetime.combine(cutoff_day + timedelta(days=1), datetime.min.time(), UTC) - timedelta(microseconds=1)
    history = ds.ratings.filter(pl.col("rated_at") <= end_of)
    future = ds.ratings.filter(pl.col("rated_at") > end_of)
    users_df, movies_df = features_as_of(ds, history, end_of)
    stats = feature_io.stats_from_frames(users_df, movies_df)  # fixed at training, as in production
    bar = fits_bar(cfg, "A")
    model = fit_model(history, feature_io.matrices(users_df, movies_df, stats), cfg.train)
    base = fit_baselines(ds, history, "A", cfg, bar)
    warm = np.zeros(len(ds.user_ids), bool)
    warm[ds.idx(history)[0]] = True
    first_day = ds.ratings.group_by("user_id").agg(pl.col("rated_at").min().dt.date().alias("first"))
    board, replay = Scoreboard(), Replay(ds, model, stats)
    for day in days_bar(cfg, _eval_days(future, first_day, cfg.max_days)):
        events_df = future.filter(pl.col("rated_at").dt.date() == day)
        known = events_df.join(first_day.filter(pl.col("first") < day), on="user_id", how="semi")
        cold = events_df.join(known.select("user_id").unique(), on="user_id", how="anti")
        _score_cold(board, ds, cold, base)
        if not known.is_empty():
            _score_day(board, replay, datetime.combine(day, datetime.min.time(), UTC), known, base, warm)
    return board.rows(base.params(), dataset=ds.name, protocol="A")


def _score_day(board: Scoreboard, replay: Replay, start: datetime, known: pl.DataFrame, base: Baselines,
               warm: np.ndarray) -> None:
    """Score one day's `known` events (users with an earlier rating) from features through day-1."""

    ds = replay.ds
    users = known.select("user_id").unique()
    active = replay.prior(start).join(users, on="user_id", how="semi")
    fm = replay.features(start, users)
    u_emb, m_emb, m_bias = replay.embed(fm, active)
    pos = np.full(len(ds.user_ids), -1)
    pos[index_of(ds.user_ids, fm.user_ids)] = np.arange(len(fm.user_ids))
    so_far = History.build(active, ds.user_ids, ds.movie_ids)  # ratings before the day only
    methods = {MODEL: model_methods(u_emb, pos, m_emb, *rating_map(replay.model), m_bias),
               **base.methods(len(ds.movie_ids), so_far)}
    seen = _pairs(ds, active)
    eu, em, er = ds.idx(known)
    for group, sel in (("warm", warm[eu]), ("new", ~warm[eu])):
        board.add_all(group, methods, (eu[sel], em[sel], er[sel]), seen)


def _score_cold(board: Scoreboard, ds: Dataset, cold: pl.DataFrame, base: Baselines) -> None:
    if cold.is_empty():
        return
    events = ds.idx(cold)
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32))
    board.add_all("cold", {FALLBACK: base.fallback(len(ds.movie_ids)),
                           "global_mean": base.methods(len(ds.movie_ids))["global_mean"]}, events, empty)


def load_dataset(directory: Path, name: str | None = None) -> Dataset:

    return Dataset(name or directory.name, read_ratings(directory), read_movies(directory), read_tags(directory))


def evaluate_dataset(ds: Dataset, cfg: EvalConfig = EvalConfig(), protocols: str = "AB") -> pl.DataFrame:

    rows: list[dict[str, object]] = []
    if "A" in protocols:
        cutoff = compute_split(ds.ratings.lazy()).cutoff_day
        rows += protocol_a(ds, cutoff, cfg)
    if "B" in protocols:
        rows += protocol_b(ds, cfg)
    return pl.DataFrame(rows)


def variants(base: TrainConfig) -> dict[str, TrainConfig]:
    """The ablation behind the defaults: history, movie-ID embeddings, the ranking prior, negatives."""
    return {
        "default (history + IDs + prior, in-batch + uniform negatives)": base,
        "no history": replace(base, history_len=0),
        "no ID embeddings in the movie tower": replace(base, movie_tower_ids=False),
        "no history, no IDs (features only)": replace(base, history_len=0, id_min_ratings=0),
        "no ranking prior": replace(base, ranking_prior=False),
        "in-batch negatives only": replace(base, uniform_negatives=0),
        "liked positives only (>= 4 stars)": replace(base, positive_min_rating=4.0),
        "MSE only (no retrieval loss)": replace(base, retrieval_weight=0.0),
    }
