"""The batched serving path: many users (or movies) answered by one pass over the movie matrix.

For a batch of user requests: one lookup per user (or one for all, when the source can), one
feature scaling and one tower forward (with the history term, history_tower.py) for every user
with features, one candidate pass against
all movies (int8, or one float32 GEMM), the seen mask, and the exact re-rank of the candidates
(`topn.exact_scores`, ties by movie id). Every step gives a user the same bits whatever the batch
(the tower runs per row, the candidate cut is widened by the pass's proven error bound, the exact
score of a pair is fixed arithmetic), so a user's answer is the same alone, in any batch, through
the CLI and in the batch table (batch.py uses the same tower and rule).

The movie rows are split into `parts` ranges scored on as many threads (numpy releases the GIL),
each with its own exact top N, merged exactly: one batch uses both cores without OpenBLAS' own
threads, which spin and collapse when a neighbour process holds a core.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

import numpy as np

from movierec_assets.serving.index.quantized import (
    SAFE_LEVELS,
    Int8Index,
    NotExact,
    approximate,
    quantize_queries,
    rescored_top_n,
    tolerances,
)
from movierec_assets.serving.index.topn import (
    CHUNK,
    exact_scores,
    gemm_tolerance,
    mask_columns,
    merge_top_n,
    scores_for,
    top_n_columns,
)
from movierec_assets.serving.online.history_tower import rated_inputs
from movierec_assets.serving.online.served import Answer, Served
from movierec_assets.serving.online.state import UserSource
from movierec_assets.serving.online.tower import encode_rows
from movierec_assets.serving.online.users import lookup_many

T = TypeVar("T")
log = logging.getLogger(__name__)


_parts = {"n": min(2, os.cpu_count() or 1), "pool": None}


def set_parts(n: int) -> None:
    """Score each batch in n movie ranges on n threads (default: 2, or 1 on a 1-core machine)."""
    _parts.update(n=max(1, n), pool=None)


def _pool() -> ThreadPoolExecutor:
    if _parts["pool"] is None:
        _parts["pool"] = ThreadPoolExecutor(_parts["n"] - 1, thread_name_prefix="score")  # type: ignore[assignment]
    return _parts["pool"]  # type: ignore[return-value]


def part_ranges(rows_total: int) -> list[tuple[int, int]]:
    """The movie row ranges (whole chunks) that one batch is scored in, one per thread."""
    step = max(-(-rows_total // (_parts["n"] * CHUNK)) * CHUNK, CHUNK)
    return [(lo, min(lo + step, rows_total)) for lo in range(0, rows_total, step)]


def in_parts(part: Callable[[int, int], tuple[np.ndarray, np.ndarray]], rows_total: int,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top n per query over all movie rows, computed range by range in parallel.

    `part(lo, hi)` gives the top n within rows lo..hi as (local rows (B, n), scores (B, n)).
    Returns (rows (B, n), scores (B, n)), -1 / -inf padded.
    """

    def run(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        rows, vals = part(lo, hi)
        return np.where(rows >= 0, rows + lo, -1), vals

    ranges = part_ranges(rows_total)
    if len(ranges) == 1:
        return run(*ranges[0])
    others = [_pool().submit(run, lo, hi) for lo, hi in ranges[1:]]
    first = run(*ranges[0])
    return merge_top_n([first, *(f.result() for f in others)], n)


class Once(Generic[T]):
    """A value computed on first use, once, by whichever thread asks first (the others wait)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make, self._lock, self._value = make, threading.Lock(), None

    def __call__(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = (self._make(),)
        return self._value[0]


# (movie rows, query columns) pairs to exclude, or a callable giving them when first needed.
Mask = tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray]]


def _in_range(mask: Mask, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    mask_rows, mask_cols = mask() if callable(mask) else mask
    sel = (mask_rows >= lo) & (mask_rows < hi)
    return mask_rows[sel] - lo, mask_cols[sel]


def top_n_parts(matrix: np.ndarray, movies: int, bias: np.ndarray | None, queries: np.ndarray, n: int,
                mask: Mask, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top n per query over the `movies` real rows of a padded matrix (plus its padded prior,
    or None): float32 BLAS candidates within `tol` (`gemm_tolerance`), re-ranked exactly."""

    def part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        scores = scores_for(matrix[lo:hi], movies - lo, queries)
        if bias is not None:
            scores += bias[lo:hi, None]
        mask_columns(scores, *_in_range(mask, lo, hi))
        return top_n_columns(scores, n, tol, lambda r, c: exact_scores(matrix, bias, queries, r + lo, c))

    return in_parts(part, matrix.shape[0], n)


def float32_top_n(served: Served, queries: np.ndarray, n: int, mask: Mask) -> tuple[np.ndarray, np.ndarray]:
    """The users' exact top n (E @ u plus the prior) from float32 candidates."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    tol = gemm_tolerance(queries, served.ep_norm, served.bias_max)
    return top_n_parts(served.ep, served.movies, served.bias_p, queries, n, mask, tol)


def int8_top_n(served: Served, queries: np.ndarray, n: int, mask: Mask) -> tuple[np.ndarray, np.ndarray]:
    """The same exact top n as `top_n_parts` over `user_scores`, from int8 candidates re-ranked
    exactly (see quantized.py). The mask is first needed after the int8 pass."""
    index = served.int8
    assert index is not None
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    codes, scale, query_error = quantize_queries(queries)
    tol = tolerances(index, queries, query_error)

    def part(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        approx = approximate(index, lo, hi, codes, scale)
        rows, cols = _in_range(mask, lo, hi)
        mask_columns(approx, cols, rows)  # approx is (queries, movies): the transposed cells
        return rescored_top_n(approx, tol, n,
                              lambda r, c: exact_scores(served.ep, served.bias_p, queries, r + lo, c))

    return in_parts(part, served.ep.shape[0], n)


def _checked(index: Int8Index, rows_total: int) -> Int8Index:
    """The index, once every current movie range's session is built and passed `check`."""
    for lo, hi in part_ranges(rows_total):
        index.check(lo, hi)
    return index


def warm(served: Served) -> Served:
    """Builds and checks the int8 sessions of the current movie ranges before the version takes
    traffic. Where the products are not exact (see `Int8Index.check`) with 8-bit codes, tries the
    safe 63-level codes; where those are not exact either, scores in float32 and says why (one
    log line; `Served.scoring_fallback` is in /health). Answers are the same in every case."""
    index, rows_total = served.int8, served.ep.shape[0]
    if index is None:
        return served
    try:
        _checked(index, rows_total)
        log.info("model %s: int8 scoring with %d-level movie codes", served.version, index.levels)
        return served
    except NotExact as exc:
        reason = str(exc)
    if index.levels > SAFE_LEVELS:
        safe = Int8Index.build(served.ep, served.movies, served.bias_p, SAFE_LEVELS, index.make_session)
        try:
            _checked(safe, rows_total)
            log.warning("model %s: %s; int8 scoring with %d-level codes", served.version, reason, SAFE_LEVELS)
            return dataclasses.replace(served, int8=safe)
        except NotExact as exc:
            reason = f"{reason}; {exc}"
    log.warning("model %s: scoring in float32 (int8 fallback): %s", served.version, reason)
    return dataclasses.replace(served, int8=None, scoring_fallback=reason)


def popular_rows(served: Served, seen_rows: np.ndarray, n: int) -> list[int]:
    popular = served.state.catalog.popular_rows
    # Only the first n + |seen| popular movies can survive the mask.
    head = popular[: n + len(seen_rows)]
    return head[~np.isin(head, seen_rows)][:n].tolist()


def recommend_users(served: Served, users: UserSource, requests: Sequence[tuple[int, int]]) -> list[Answer]:
    """Answers for validated (user_id, n) requests, in order, all from one model version.

    One lookup for the batch gives each user's features and rated movies (newest first): the
    seen-mask and, for a history-aware encoder, the history it pools. Users without features, and
    (history-aware encoders) users without any rating, get the labelled cold-start answer.
    """
    data = lookup_many(users, [u for u, _ in requests])
    encoder = served.state.encoder
    n_hist = int(getattr(encoder, "history_len", 0))
    warm = [i for i, row in enumerate(data.row) if row is not None and (not n_hist or len(data.seen[i]))]
    use = np.zeros(len(requests), bool)
    use[warm] = True
    rated = rated_inputs(served.rows_of, data.seen, data.stars, n_hist, use)
    if n_hist and served.history.add(rated.skipped, rated.truncated):
        log.info("model %s: rated movies unknown to its catalogue are skipped in histories (counted in "
                 "/health)", served.version)
    seen = (rated.owner, rated.rows)
    answers: list[Answer | None] = [None] * len(requests)
    if warm and data.features is not None:
        at = [data.row[i] for i in warm]
        frame = data.features if at == list(range(len(data.features))) else data.features[at]  # type: ignore[misc]
        ids = np.array([requests[i][0] for i in warm], dtype=np.int64)
        history = None if rated.history is None else (rated.history[0][warm], rated.history[1][warm])
        queries = encode_rows(encoder, served.state.scaler(frame), ids, history=history)
        finite = np.isfinite(queries).all(axis=1)
        if not finite.all():  # NaN/inf features: never let them reach the scores (or the batch's int8 scale)
            log.warning("users %s have non-finite features; serving them popular movies", ids[~finite].tolist())
            warm, queries = [i for i, ok in zip(warm, finite, strict=True) if ok], queries[finite]
        if warm:
            for i, answer in zip(warm, _ranked_answers(served, requests, warm, queries, lambda: seen), strict=True):
                answers[i] = answer
    for i in sorted(set(range(len(requests))) - set(warm)):  # cold start: popular movies
        user_id, n = requests[i]
        answers[i] = Answer(served, True, popular_rows(served, rated.rows[rated.owner == i], n), None, user_id=user_id)
    return answers  # type: ignore[return-value]


def _ranked_answers(served: Served, requests: Sequence[tuple[int, int]], warm: list[int], queries: np.ndarray,
                    seen: Callable[[], tuple[np.ndarray, np.ndarray]]) -> list[Answer]:
    """The model's top n for the `warm` requests, whose user vectors are the rows of `queries`."""
    slot = np.full(len(requests), -1)
    slot[warm] = np.arange(len(warm))  # request index -> query column

    def mask() -> tuple[np.ndarray, np.ndarray]:
        owner, rows = seen()
        keep = slot[owner] >= 0
        return rows[keep], slot[owner[keep]]

    n_max = max(requests[i][1] for i in warm)
    top = float32_top_n if served.int8 is None else int8_top_n
    rows, vals = top(served, queries, n_max, Once(mask))
    answers = []
    for k, i in enumerate(warm):
        user_id, n = requests[i]
        found = rows[k, :n] >= 0
        answers.append(Answer(served, False, rows[k, :n][found].tolist(), vals[k, :n][found].tolist(),
                              user_id=user_id))
    return answers


def similar_movies(served: Served, requests: Sequence[tuple[int, int]]) -> list[Answer]:
    """Answers for (movie row, n) requests: highest cosine first, the movie itself excluded."""
    movie_rows = np.array([row for row, _ in requests], dtype=np.int64)
    queries = served.state.unit[movie_rows]
    rows, vals = top_n_parts(served.unit_p, served.movies, None, queries, max(n for _, n in requests),
                             (movie_rows, np.arange(len(requests))), gemm_tolerance(queries, served.unit_norm, 0.0))
    ids = served.state.store.movie_ids
    answers = []
    for k, (row, n) in enumerate(requests):
        keep = rows[k, :n] >= 0
        answers.append(Answer(served, False, rows[k, :n][keep].tolist(), vals[k, :n][keep].tolist(),
                              movie_id=int(ids[row])))
    return answers
