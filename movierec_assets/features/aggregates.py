"""Additive per-user and per-movie sums of ratings, accumulated batch by batch with numpy bincounts.

Every quantity is an exact integer (counts, sums of half-stars and of their squares, sums of
doubled years) or a max (latest timestamp), so adding batches in any order, in any chunking, or
incrementally gives bit-identical results. Ids index dense arrays directly (MovieLens ids are
small positive integers); the trend window keeps only candidate rows near the latest timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

CHUNK_ROWS = 4_000_000
MAX_DENSE_ID = 1 << 26  # 64M: far above MovieLens ids, small enough for dense arrays
N_GENRES = 20
_TRASH = N_GENRES  # the genre slot of "no genre here"; dropped at the end
_US_PER_DAY = 86_400_000_000
_NO_TIME = np.iinfo(np.int64).min
_LOW24 = (1 << 24) - 1  # packed bincount weights: count in the low 24 bits, half-star sum above


@dataclass(frozen=True)
class MovieLookup:
    """Per-movie-id attributes as dense arrays: doubled (median-filled) year and genre slots."""

    year2: np.ndarray  # int64, index movie_id; the median year for ids not in the catalogue
    slots: np.ndarray  # int64 (K, max_id+1): k-th genre index of each movie, _TRASH when none
    default_year2: int

    @classmethod
    def build(cls, attributes: pl.DataFrame, genre_columns: list[str]) -> MovieLookup:
        ids = attributes["movie_id"].to_numpy().astype(np.int64)
        _check_ids(ids, "movie_id")
        size = int(ids.max()) + 1 if ids.size else 1
        year2 = (attributes["year"].to_numpy() * 2).round().astype(np.int64)
        default = int(np.median(year2)) if ids.size else 0
        flags = attributes.select(genre_columns).to_numpy().astype(bool) if ids.size else np.zeros((0, N_GENRES), bool)
        k = max(int(flags.sum(axis=1).max()) if ids.size else 1, 1)
        slots = np.full((k, size), _TRASH, dtype=np.int64)  # int64: no cast per rating
        rows, cols = np.nonzero(flags)
        rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # position of each genre within its movie
        slots[rank, ids[rows]] = cols
        table = np.full(size, default, dtype=np.int64)
        table[ids] = year2
        return cls(year2=table, slots=slots, default_year2=default)

    def years(self, movie_ids: np.ndarray) -> np.ndarray:
        if movie_ids.max() < self.year2.size:
            return self.year2[movie_ids]
        inside = movie_ids < self.year2.size
        out = np.full(movie_ids.size, self.default_year2, dtype=np.int64)
        out[inside] = self.year2[movie_ids[inside]]
        return out

    def slot(self, k: int, movie_ids: np.ndarray) -> np.ndarray:
        if movie_ids.max() < self.slots.shape[1]:
            return self.slots[k, movie_ids]
        inside = movie_ids < self.slots.shape[1]
        out = np.full(movie_ids.size, _TRASH, dtype=np.int64)
        out[inside] = self.slots[k, movie_ids[inside]]
        return out


def _check_ids(ids: np.ndarray, name: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_DENSE_ID):
        bad = ids[(ids < 0) | (ids >= MAX_DENSE_ID)][0]
        raise ValueError(f"{name} {bad} is outside 0..{MAX_DENSE_ID - 1}; feature aggregation needs small ids")


def _add(acc: np.ndarray, values: np.ndarray) -> np.ndarray:
    """acc + values, growing acc (zero-filled) to the longer length along the last axis."""
    if values.shape[-1] > acc.shape[-1]:
        acc, values = values, acc
    acc[..., : values.shape[-1]] += values
    return acc


@dataclass
class Accumulator:
    """Running sums over rating batches; `merge` combines accumulators filled in parallel."""

    lookup: MovieLookup
    trend_days: int
    as_of_us: int | None = None  # rows after this instant are ignored
    # users: counts+half-star sums packed in one float64 bincount, squares, doubled years, genres
    u_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    u_s2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    u_ss2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    u_year2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    u_last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    u_gn: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flat, index user*21+genre
    u_gs2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    m_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    m_s2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    m_ss2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    latest_us: int = _NO_TIME
    recent: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (movie_id, rated_at us)

    def add(self, batch: pa.RecordBatch | pa.Table | pl.DataFrame) -> None:
        """Fold in a batch with columns user_id, movie_id, rating, rated_at (UTC)."""
        frame = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if frame.height > CHUNK_ROWS:  # bounds memory, and keeps packed counts below 2**24
            for start in range(0, frame.height, CHUNK_ROWS):
                self.add(frame.slice(start, CHUNK_ROWS))
            return
        ts = frame["rated_at"].dt.cast_time_unit("us").to_physical().to_numpy()
        uid = frame["user_id"].to_numpy().astype(np.int64, copy=False)
        mid = frame["movie_id"].to_numpy().astype(np.int64, copy=False)
        r2 = np.rint(frame["rating"].to_numpy() * 2).astype(np.int64)
        if self.as_of_us is not None:
            keep = ts <= self.as_of_us
            uid, mid, r2, ts = uid[keep], mid[keep], r2[keep], ts[keep]
        if uid.size == 0:
            return
        _check_ids(uid, "user_id")
        _check_ids(mid, "movie_id")
        weights = ((r2 << 24) + 1).astype(np.float64)  # packed count + half-star sum; exact below 2**53
        squares = (r2 * r2).astype(np.float64)
        self._add_users(uid, mid, ts, weights, squares)
        self._add_movies(mid, weights, squares)
        self.latest_us = max(self.latest_us, int(ts.max()))
        self._keep_recent(mid, ts)

    def _add_users(
        self, uid: np.ndarray, mid: np.ndarray, ts: np.ndarray, weights: np.ndarray, squares: np.ndarray
    ) -> None:
        size = int(uid.max()) + 1
        packed = np.bincount(uid, weights=weights, minlength=size).astype(np.int64)
        self.u_n = _add(self.u_n, packed & _LOW24)
        self.u_s2 = _add(self.u_s2, packed >> 24)
        self.u_ss2 = _add(self.u_ss2, np.bincount(uid, weights=squares, minlength=size).astype(np.int64))
        self.u_year2 = _add(self.u_year2, np.bincount(uid, weights=self.lookup.years(mid), minlength=size).astype(np.int64))
        last = np.full(size, _NO_TIME, dtype=np.int64)
        np.maximum.at(last, uid, ts)
        self.u_last = _max(self.u_last, last)
        # Genres: one bincount per genre slot over keys user*21+genre, packed count+sum weights;
        # the float sums stay exact integers (< 2**53), unpacked once per chunk.
        per_genre = np.zeros(size * (N_GENRES + 1), np.float64)
        base = uid * (N_GENRES + 1)
        for k in range(self.lookup.slots.shape[0]):
            genre = self.lookup.slot(k, mid)
            used = genre != _TRASH
            if used.mean() < 0.5:  # sparse slot: compress first
                key, w = base[used] + genre[used], weights[used]
            else:
                key, w = base + genre, weights
            per_genre += np.bincount(key, weights=w, minlength=per_genre.size)
        packed_genre = per_genre.astype(np.int64)
        self.u_gn = _add(self.u_gn, packed_genre & _LOW24)
        self.u_gs2 = _add(self.u_gs2, packed_genre >> 24)

    def _add_movies(self, mid: np.ndarray, weights: np.ndarray, squares: np.ndarray) -> None:
        size = int(mid.max()) + 1
        packed = np.bincount(mid, weights=weights, minlength=size).astype(np.int64)
        self.m_n = _add(self.m_n, packed & _LOW24)
        self.m_s2 = _add(self.m_s2, packed >> 24)
        self.m_ss2 = _add(self.m_ss2, np.bincount(mid, weights=squares, minlength=size).astype(np.int64))

    def _keep_recent(self, mid: np.ndarray, ts: np.ndarray) -> None:
        # Any row in the final window is also inside the window of the running latest, so keeping
        # those candidates (and pruning old ones as the latest moves) is exact.
        start = self._window_start(self.latest_us)
        keep = ts > start
        self.recent = [(m[t > start], t[t > start]) for m, t in self.recent] + [(mid[keep], ts[keep])]

    def _window_start(self, now_us: int) -> int:
        return now_us - self.trend_days * _US_PER_DAY if now_us != _NO_TIME else _NO_TIME

    def merge(self, other: Accumulator) -> Accumulator:
        """Fold another accumulator (same lookup) into this one; returns self."""
        for name in ("u_n", "u_s2", "u_ss2", "u_year2", "u_gn", "u_gs2", "m_n", "m_s2", "m_ss2"):
            setattr(self, name, _add(getattr(self, name), getattr(other, name)))
        self.u_last = _max(self.u_last, other.u_last)
        self.latest_us = max(self.latest_us, other.latest_us)
        self.recent += other.recent
        self._keep_recent(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return self

    # -- results ----------------------------------------------------------------------------------
    def user_sums(self) -> pl.DataFrame:
        """user_id, n, s2, ss2, year2, last_at, n_<g>, s2_<g> for every user with a rating."""
        ids = np.flatnonzero(self.u_n)
        columns: dict[str, object] = {
            "user_id": ids.astype(np.int32),
            "n": self.u_n[ids], "s2": self.u_s2[ids], "ss2": self.u_ss2[ids], "year2": self.u_year2[ids],
            "last_at": pl.Series(self.u_last[ids]).cast(pl.Datetime("us", "UTC")),
        }
        width = N_GENRES + 1
        gn = _pad(self.u_gn, self.u_n.size * width, 0).reshape(-1, width).T
        gs2 = _pad(self.u_gs2, self.u_n.size * width, 0).reshape(-1, width).T
        for g in range(N_GENRES):
            columns[f"n_{g}"] = gn[g, ids]
            columns[f"s2_{g}"] = gs2[g, ids]
        return pl.DataFrame(columns)

    def movie_sums(self, now_us: int | None) -> pl.DataFrame:
        """movie_id, n, s2, ss2, n_recent (ratings after `now` - trend_days) for every rated movie."""
        ids = np.flatnonzero(self.m_n)
        recent = np.zeros(self.m_n.size, np.int64)
        if now_us is not None and self.recent:
            start = self._window_start(now_us)
            mid = np.concatenate([m for m, _ in self.recent])
            ts = np.concatenate([t for _, t in self.recent])
            in_window = mid[(ts > start) & (ts <= now_us)]
            recent = _add(recent, np.bincount(in_window, minlength=self.m_n.size))
        return pl.DataFrame({
            "movie_id": ids.astype(np.int32),
            "n": self.m_n[ids], "s2": self.m_s2[ids], "ss2": self.m_ss2[ids], "n_recent": recent[ids],
        })

    def latest(self) -> int | None:
        return None if self.latest_us == _NO_TIME else self.latest_us


def _pad(values: np.ndarray, size: int, fill: int) -> np.ndarray:
    if values.shape[-1] >= size:
        return values
    pad = np.full((*values.shape[:-1], size - values.shape[-1]), fill, dtype=values.dtype)
    return np.concatenate([values, pad], axis=-1)


def _max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = max(a.size, b.size)
    return np.maximum(_pad(a, size, _NO_TIME), _pad(b, size, _NO_TIME))
