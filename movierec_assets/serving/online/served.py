"""What one model version is served from, and answers in their compact form.

`Served` wraps an immutable `ServingState` with what the batched path needs, all built before the
version is swapped in: the movie matrices transposed and padded for one GEMM per batch, and every
movie's JSON fragment (id, title, year, genres) so a response is rendered by string joins instead
of per-item model validation. An `Answer` holds rows and scores; it becomes the public
`Recommendations` (CLI, Python API) or response bytes (HTTP) on demand.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from movierec_assets.serving.index.quantized import Int8Index
from movierec_assets.serving.index.topn import max_norm, padded_rows
from movierec_assets.serving.online.history_tower import HistoryCounters
from movierec_assets.serving.online.state import ServingState

_DENSE_IDS = 1 << 24  # a dense id -> row table up to 128 MB; MovieLens ids stay far below


@dataclass(frozen=True)
class Item:
    movie_id: int
    title: str | None
    year: int | None
    genres: list[str]
    score: float | None


@dataclass(frozen=True)
class Recommendations:
    model_version: str
    cold_start: bool
    items: list[Item]
    user_id: int | None = None
    movie_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fragment(movie_id: int, title: str | None, year: int | None, genres: list[str]) -> str:
    """An item's JSON object up to (and including) the `"score":` key, for string assembly."""
    head = json.dumps({"movie_id": movie_id, "title": title, "year": year, "genres": genres},
                      ensure_ascii=False, separators=(",", ":"))
    return head[:-1] + ',"score":'


_scorer: dict[str, Any] = {"int8": True, "make_session": None}


def use_int8(on: bool, make_session: Callable[[np.ndarray, np.ndarray, np.ndarray], Any] | None = None) -> None:
    """Find candidates with int8 (default) or float32 scores of every movie; answers are exact
    either way. `make_session` replaces ONNX Runtime's int8 kernel (tests simulate other CPUs).
    Applies to versions loaded from now on."""
    _scorer.update(int8=on, make_session=make_session)


@dataclass(frozen=True)
class Served:
    state: ServingState
    ep: np.ndarray  # (Mpad, d) movie embeddings padded to whole chunks: user scores
    unit_p: np.ndarray  # (Mpad, d) the unit rows likewise: cosine between movies
    fragments: list[str]  # per movie row: its JSON object without the score value
    row_of_id: np.ndarray | None  # dense movie id -> row (-1: absent), when ids are small enough
    bias_p: np.ndarray | None = None  # (Mpad,) the model's ranking prior per movie row; None: all zero
    int8: Int8Index | None = None  # int8 candidate index (quantized.py); None: score in float32
    ep_norm: float = 0.0  # max row L2 norm of ep, max |prior| and max unit-row norm: the float32
    bias_max: float = 0.0  # candidate passes' error bounds (topn.gemm_tolerance)
    unit_norm: float = 0.0
    scoring_fallback: str | None = None  # why int8 scoring was wanted but is off (/health, logs); None: it is not
    history: HistoryCounters = field(default_factory=HistoryCounters)  # what served histories dropped

    @classmethod
    def build(cls, state: ServingState) -> Served:
        cat, ids = state.catalog, state.store.movie_ids.tolist()
        fragments = [_fragment(*row) for row in zip(ids, cat.titles, cat.years, cat.genres, strict=True)]
        row_of_id = None
        if ids and 0 <= ids[0] and ids[-1] < _DENSE_IDS:  # ids are sorted
            row_of_id = np.full(ids[-1] + 1, -1, dtype=np.int64)
            row_of_id[ids] = np.arange(len(ids))
        ep, bias, bias_p = padded_rows(state.store.matrix), state.store.ranking_bias, None
        if bias is not None:  # padding rows get 0, so their -inf scores stay -inf
            bias_p = np.zeros(ep.shape[0], np.float32)
            bias_p[: len(bias)] = bias
        int8 = Int8Index.build(ep, len(ids), bias_p, make_session=_scorer["make_session"]) if _scorer["int8"] else None
        unit_p = padded_rows(state.unit)
        bias_max = 0.0 if bias_p is None else float(np.abs(bias_p).max(initial=0.0))
        return cls(state, ep, unit_p, fragments, row_of_id, bias_p, int8, max_norm(ep), bias_max, max_norm(unit_p))

    def rows_of(self, movie_ids: np.ndarray) -> np.ndarray:
        """Rows of movie ids (-1 for unknown ones): one gather instead of a binary search each."""
        table = self.row_of_id
        if table is None:
            return self.state.store.rows_of(movie_ids)
        ids = np.asarray(movie_ids, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(table))
        return np.where(inside, table[np.where(inside, ids, 0)], -1)

    @property
    def version(self) -> str:
        return self.state.version

    @property
    def movies(self) -> int:
        return len(self.state.store.movie_ids)

    @property
    def scoring(self) -> str:
        """How candidates are found: "int8" or "float32" (answers are exact either way)."""
        return "float32" if self.int8 is None else "int8"


@dataclass(frozen=True)
class Answer:
    """One request's result: movie rows best first and their scores (None for popularity)."""

    served: Served
    cold_start: bool
    rows: list[int]
    scores: list[float] | None
    user_id: int | None = None
    movie_id: int | None = None

    def recommendations(self) -> Recommendations:
        state = self.served.state
        cat, ids = state.catalog, state.store.movie_ids
        items = [
            Item(int(ids[r]), cat.titles[r], cat.years[r], cat.genres[r], None if self.scores is None else self.scores[i])
            for i, r in enumerate(self.rows)
        ]
        return Recommendations(state.version, self.cold_start, items, self.user_id, self.movie_id)

    def to_json(self) -> bytes:
        """The `Recommendations` JSON (same keys, order and values as its pydantic rendering)."""
        frags = self.served.fragments
        if self.scores is None:
            items = ",".join(frags[r] + "null}" for r in self.rows)
        else:
            items = ",".join(f"{frags[r]}{s!r}}}" for r, s in zip(self.rows, self.scores, strict=True))
        head = json.dumps(self.served.version)
        tail = f'"user_id":{_num(self.user_id)},"movie_id":{_num(self.movie_id)}'
        cold = "true" if self.cold_start else "false"
        return f'{{"model_version":{head},"cold_start":{cold},"items":[{items}],{tail}}}'.encode()


def _num(value: int | None) -> str:
    return "null" if value is None else str(int(value))
