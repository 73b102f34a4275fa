"""Users' rating histories as the two-tower's user-tower inputs (numpy and polars only, no TF).

Tensor interface (the model reads these two keys; both absent = aggregates only, a cold user):

- `history_movie_ids`: int32, shape (B, N). Raw MovieLens movie ids of the user's most recent
  rated movies, most recent first, right-padded with `PAD_ID` (-1).
- `history_ratings`: float32, shape (B, N). The stars of those ratings (0.5..5), 0 in padding.

N is the model's `history_len` (`model.hparams.history_len`; 0, no history, by default, 50 tested); a model accepts any
N' <= its own, and a longer history must be truncated to the most recent N (this module does).
Order within a user is (rated_at, movie_id): the history for an event at time t holds only
ratings before it in that order, never the event itself or anything later. Ids the model has no
ID row for (new or rare movies) and padding are ignored by the model; ids unknown to the
catalogue passed as `known_movie_ids` are dropped here and counted.

Serving: `histories_for_users(rows, user_ids, n, known_movie_ids)` with `rows` the users'
(user_id, movie_id, rating, rated_at) ratings, then pass `.inputs()` alongside `user_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

HISTORY_IDS = "history_movie_ids"
HISTORY_RATINGS = "history_ratings"
PAD_ID = -1


@dataclass(frozen=True)
class Histories:
    """One row per requested user: see the module docstring for the layout."""

    movie_ids: np.ndarray  # (U, N) int32, PAD_ID in padding
    ratings: np.ndarray  # (U, N) float32, 0 in padding
    lengths: np.ndarray  # (U,) int32: real entries per row
    skipped_unknown: int = 0  # ratings of movies not in known_movie_ids, dropped
    truncated_users: int = 0  # users with more than N usable ratings (only the newest N kept)

    def inputs(self) -> dict[str, np.ndarray]:
        return {HISTORY_IDS: self.movie_ids, HISTORY_RATINGS: self.ratings}


def empty(n_users: int, n: int) -> Histories:
    """Histories of users with no ratings (the labelled cold-start case)."""
    return Histories(np.full((n_users, n), PAD_ID, np.int32), np.zeros((n_users, n), np.float32),
                     np.zeros(n_users, np.int32))


def histories_for_users(rows: pl.DataFrame, user_ids: np.ndarray, n: int,
                        known_movie_ids: np.ndarray | None = None) -> Histories:
    """The newest `n` ratings of each of `user_ids` (in that order) from `rows`.

    `rows`: (user_id, movie_id, rating, rated_at), any order, may hold other users. Users with no
    row get an all-padding history. `known_movie_ids` (sorted or not): drop and count the others.
    """
    user_ids = np.asarray(user_ids, np.int64)
    if n <= 0 or len(user_ids) == 0 or rows.is_empty():
        return empty(len(user_ids), max(n, 0))
    df = rows.select("user_id", "movie_id", "rating", "rated_at").filter(pl.col("user_id").is_in(user_ids))
    skipped = 0
    if known_movie_ids is not None:
        known = df["movie_id"].is_in(np.asarray(known_movie_ids))
        skipped = int((~known).sum())
        df = df.filter(known)
    df = df.sort("user_id", "rated_at", "movie_id", descending=[False, True, True])
    df = df.with_columns(pl.int_range(pl.len()).over("user_id").alias("_k"), pl.len().over("user_id").alias("_n"))
    truncated = int(df.filter(pl.col("_k") == 0)["_n"].gt(n).sum())
    df = df.filter(pl.col("_k") < n)
    row_of = {int(u): i for i, u in enumerate(user_ids)}
    out = empty(len(user_ids), n)
    r = np.fromiter((row_of[int(u)] for u in df["user_id"].to_numpy()), np.int64, df.height)
    k = df["_k"].to_numpy()
    out.movie_ids[r, k] = df["movie_id"].to_numpy()
    out.ratings[r, k] = df["rating"].to_numpy()
    np.add.at(out.lengths, r, 1)
    return Histories(out.movie_ids, out.ratings, out.lengths, skipped, truncated)


@dataclass(frozen=True)
class CausalIndex:
    """Training examples' histories without an (E, N) matrix: every event's window is a slice of
    one per-user sequence (sorted by user, then (rated_at, movie_id)).

    Event e's history is `seq_*[max(start[e], pos[e] - N) : pos[e]]`, newest first.
    """

    seq_movie_ids: np.ndarray  # (E,) int32 raw movie ids, user-sorted order
    seq_ratings: np.ndarray  # (E,) float32
    pos: np.ndarray  # (E,) int32: event e's own place in the sequence (in the caller's order)
    start: np.ndarray  # (E,) int32: where event e's user starts in the sequence

    def windows(self, events: np.ndarray, n: int) -> Histories:
        """The histories of `events` (indices in the caller's order), as the model's inputs."""
        pos, start = self.pos[events].astype(np.int64), self.start[events].astype(np.int64)
        idx = pos[:, None] - 1 - np.arange(n)[None, :]
        valid = idx >= start[:, None]
        safe = np.where(valid, idx, 0)
        ids = np.where(valid, self.seq_movie_ids[safe], PAD_ID).astype(np.int32)
        ratings = np.where(valid, self.seq_ratings[safe], 0.0).astype(np.float32)
        return Histories(ids, ratings, valid.sum(1).astype(np.int32))


def causal_index(user: np.ndarray, movie_ids: np.ndarray, rating: np.ndarray, rated_at: np.ndarray) -> CausalIndex:
    """Build the index for events given in any order (`movie_ids` raw ids, `rated_at` sortable)."""
    order = np.lexsort((movie_ids, rated_at, user))  # by user, then rated_at, then movie id
    pos = np.empty(len(order), np.int32)
    pos[order] = np.arange(len(order), dtype=np.int32)
    sorted_users = np.asarray(user)[order]
    first = np.ones(len(order), bool)
    first[1:] = sorted_users[1:] != sorted_users[:-1]
    user_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0)).astype(np.int32)
    start = np.empty(len(order), np.int32)
    start[order] = user_start
    return CausalIndex(np.asarray(movie_ids, np.int32)[order], np.asarray(rating, np.float32)[order], pos, start)
