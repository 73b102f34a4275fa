"""Exact top-N retrieval over a movie-embedding matrix, in pure numpy, by one rule everywhere.

A movie's exact score for a user is `exact_scores`: float64 products (exact: two float32 values
need 48 of the 53 bits) summed by a fixed binary tree of elementwise adds, plus the ranking prior.
A pair's score is therefore the same IEEE operations whatever the batch, the candidates beside
it, the movie ranges or the CPU (no BLAS, no SIMD-width-dependent reduction). The top n are
ordered by (exact score descending, row ascending); the stores keep rows sorted by movie id, so
ties go to the lower movie id.

A fast pass only picks candidates: one float32 BLAS product per block here (int8 in
quantized.py), whose error per score has a proven bound `tol` (`gemm_tolerance`). The cut is
widened by 2 * tol, so the candidates hold every exact winner and every tie at the cut; only they
are scored exactly. BLAS may pick any kernel, blocking or summation order by shape: the answer
does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

NEG_INF = np.float32(-np.inf)
CHUNK = 64
_LOWEST = np.float32(-np.finfo(np.float32).max)
_U32 = 2.0**-24  # float32 unit roundoff
PAIRS_PER_SLICE = 1024

# exact(movie rows, query columns) -> float64 exact scores of those pairs
Exact = Callable[[np.ndarray, np.ndarray], np.ndarray]


def exact_scores(matrix: np.ndarray, bias: np.ndarray | None, queries: np.ndarray, rows: np.ndarray,
                 cols: np.ndarray) -> np.ndarray:
    """float64 `matrix[rows[i]] . queries[cols[i]] + bias[rows[i]]` for every pair i (see the module
    docstring: the result of a pair never depends on the other pairs or the CPU).

    In slices of PAIRS_PER_SLICE: larger temporaries are fresh pages on every call (5120 pairs at
    once: 3.4 ms, in slices of 1024: 0.8 ms; measured)."""
    out = np.empty(len(rows))
    for i in range(0, len(rows), PAIRS_PER_SLICE):
        r, c = rows[i : i + PAIRS_PER_SLICE], cols[i : i + PAIRS_PER_SLICE]
        out[i : i + len(r)] = tree_sum(matrix[r].astype(np.float64) * queries[c].astype(np.float64))
    return out if bias is None else out + bias[rows].astype(np.float64)


def tree_sum(p: np.ndarray) -> np.ndarray:
    """Row sums of a (K, d) array by a fixed binary tree of elementwise adds (halves added until
    one column is left): a row's sum is the same operations whatever K or the CPU's SIMD width."""
    while p.shape[1] > 1:
        if p.shape[1] % 2:
            p = np.concatenate([p, np.zeros((len(p), 1), p.dtype)], axis=1)
        half = p.shape[1] // 2
        p = p[:, :half] + p[:, half:]
    return p[:, 0] if p.shape[1] else np.zeros(len(p), p.dtype)


def gemm_tolerance(queries: np.ndarray, max_norm: float, max_bias: float) -> np.ndarray:
    """(B,) bound on |float32 BLAS score - exact score| of any movie, per query.

    d float32 multiply-adds in any order (fused or not) are within gamma_d * sum |e_i u_i| of the
    real dot product, and sum |e_i u_i| <= |e|_2 |u|_2 (Cauchy-Schwarz); adding the prior in float32
    costs one rounding more: gamma_{d+2} * (|e|_2 |u|_2 + |prior|) bounds both. 1% on top covers
    the float64 exact score's own error (~1e-15 relative), the last term underflow.
    """
    d = queries.shape[1]
    g = (d + 2) * _U32
    l2 = np.linalg.norm(np.asarray(queries, np.float64), axis=1)
    return 1.01 * g / (1 - g) * (l2 * max_norm + max_bias) + (d + 2) * 2.0**-126


def cut(nth: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """(B,) float32 cut for approximate scores: nth - 2 * tol rounded down (so comparing in float32
    never drops a candidate), and never below the lowest finite float (masked -inf never qualifies).

    A query's n-th best approximate score A is at least `nth`; n movies score >= A - tol exactly, so
    every exact winner (and tie at the cut) scores >= A - 2 * tol approximately."""
    bound = np.asarray(nth, np.float64) - 2 * np.asarray(tol, np.float64)
    low = bound.astype(np.float32)
    low = np.where(low > bound, np.nextafter(low, NEG_INF), low)
    return np.maximum(low, _LOWEST)


def ranked(query: np.ndarray, item: np.ndarray, score: np.ndarray, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The top n items per query from candidate (query, item, exact score) triples: (items (b, n),
    float64 scores (b, n)), best first, ties by lower item, padded with -1 / -inf."""
    order = np.lexsort((item, -score, query))
    query, item, score = query[order], item[order], score[order]
    rank = np.arange(len(query)) - np.searchsorted(query, np.arange(b))[query]
    keep = rank < n
    out_rows = np.full((b, n), -1, dtype=np.int64)
    out_vals = np.full((b, n), -np.inf)
    out_rows[query[keep], rank[keep]] = item[keep]
    out_vals[query[keep], rank[keep]] = score[keep]
    return out_rows, out_vals


def group_bound(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(group maxima (B, G), n-th largest group maximum per row (B,)) of a (B, Mpad) block.

    Columns are split into CHUNK-strided groups (j, j+G, j+2G, ...; G = Mpad / CHUNK): each group's
    maximum is then an elementwise max over CHUNK contiguous slices, a SIMD pass ~8x cheaper than a
    max over contiguous runs. The n-th largest group maximum is a lower bound of the row's n-th
    largest score (-inf when there are fewer than n groups: no useful bound).
    """
    b, mp = scores.shape
    g = mp // CHUNK
    group_max = scores.reshape(b, CHUNK, g).max(axis=1)
    if n > g:
        return group_max, np.full(b, NEG_INF, dtype=np.float32)
    return group_max, np.partition(group_max, g - n, axis=1)[:, g - n]


def _block_top_n(scores: np.ndarray, n: int, tol: np.ndarray, exact: Exact) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-row top n of a (B, Mpad) approximate block (masked, padding -inf), -1 / -inf
    padded: only groups whose maximum reaches the `cut` can hold candidates."""
    b, mp = scores.shape
    g = mp // CHUNK
    group_max, nth = group_bound(scores, n)
    bound = cut(nth, tol)
    r, grp = np.nonzero(group_max >= bound[:, None])
    c = (grp[:, None] + np.arange(CHUNK) * g).reshape(-1)
    r = np.repeat(r, CHUNK)
    keep = scores[r, c] >= bound[r]
    r, c = r[keep], c[keep]
    return ranked(r, c, exact(c, r), b, n)


# -- serving: movies x queries score blocks --------------------------------------------------------
def padded_rows(embeddings: np.ndarray) -> np.ndarray:
    """(Mpad, d) float32, C-contiguous, Mpad a multiple of CHUNK; padding rows are zero."""
    return np.ascontiguousarray(padded_transpose(embeddings).T)


def max_norm(matrix: np.ndarray) -> float:
    """The largest row L2 norm (for `gemm_tolerance`)."""
    return float(np.linalg.norm(matrix.astype(np.float64), axis=1).max(initial=0.0))


def scores_for(ep: np.ndarray, m: int, queries: np.ndarray) -> np.ndarray:
    """(Mpad, B) approximate float32 `E @ queries.T` over a `padded_rows` matrix of m movies;
    padding is -inf. Movies-major (E @ Q.T) because OpenBLAS then packs the small operand: 2-row
    batches cost 1.0 instead of 2.4 ms. Its bits may depend on the batch: only candidates come
    from it (within `gemm_tolerance`)."""
    q = np.asarray(queries, dtype=np.float32).reshape(-1, ep.shape[1])
    scores = ep @ q.T
    scores[m:] = NEG_INF
    return scores


def mask_columns(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Sets scores[rows[i], cols[i]] to -inf (in a movies x queries block: each query's seen
    movies; the queries x movies blocks pass the pairs the other way round)."""
    scores.reshape(-1)[np.asarray(rows, np.int64) * scores.shape[1] + cols] = NEG_INF


def top_n_columns(scores: np.ndarray, n: int, tol: np.ndarray, exact: Exact) -> tuple[np.ndarray, np.ndarray]:
    """Exact top n of every column of a masked approximate (Mpad, B) block: (rows (B, n), exact
    scores (B, n)), best first, ties by lower row, padded with -1 / -inf.

    Rows are split into CHUNK-strided groups (j, j+G, ...; G = Mpad / CHUNK), so the group maxima
    are one elementwise max over CHUNK contiguous slabs; their n-th largest bounds each column's
    n-th best approximate score from below, and the `cut` below it keeps every exact winner.
    """
    mp, b = scores.shape
    g = mp // CHUNK
    group_max = scores.reshape(CHUNK, g, b).max(axis=0)
    nth = np.partition(group_max, g - n, axis=0)[g - n] if n <= g else np.full(b, NEG_INF, np.float32)
    bound = cut(nth, tol)
    grp, col = np.nonzero(group_max >= bound)  # only these groups can hold candidates
    r = (grp[:, None] + np.arange(CHUNK) * g).reshape(-1)
    c = np.repeat(col, CHUNK)
    keep = scores[r, c] >= bound[c]
    r, c = r[keep], c[keep]
    return ranked(c, r, exact(r, c), b, n)


def merge_top_n(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top n of the union of per-part top n lists (rows already global, exact float64
    scores), best first, ties by lower row; -1 / -inf padding sorts last. Each part's top n holds
    every global winner that lives in the part, so the union holds them all."""
    rows = np.concatenate([r for r, _ in parts], axis=1)
    vals = np.concatenate([v for _, v in parts], axis=1)
    order = np.lexsort((np.where(rows >= 0, rows, np.iinfo(np.int64).max), -vals), axis=1)[:, :n]
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(vals, order, axis=1)


# -- batch: queries x movies score blocks ---------------------------------------------------------
def padded_transpose(embeddings: np.ndarray) -> np.ndarray:
    """(d, Mpad) float32 with Mpad a multiple of CHUNK; padding columns are zero (scored as -inf)."""
    m, d = embeddings.shape
    mp = -(-m // CHUNK) * CHUNK
    out = np.zeros((d, mp), dtype=np.float32)
    out[:, :m] = embeddings.T
    return out


def seen_csr(user_rows: np.ndarray, movie_rows: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of the movies each user row has rated, from parallel arrays of row numbers."""
    order = np.argsort(user_rows, kind="stable")
    counts = np.bincount(user_rows, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.asarray(movie_rows)[order].astype(np.int64)


def _mask_block(scores: np.ndarray, start: int, indptr: np.ndarray, indices: np.ndarray) -> None:
    b = scores.shape[0]
    lo, hi = indptr[start], indptr[start + b]
    if hi == lo:
        return
    lengths = np.diff(indptr[start : start + b + 1])
    mask_columns(scores, np.repeat(np.arange(b, dtype=np.int64), lengths), indices[lo:hi])


def iter_top_n_batch(
    embeddings: np.ndarray,
    queries: np.ndarray,
    n: int,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    block: int = 256,
    threads: int = 2,
    bias: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Blocked exact top n for many queries: yields (first query row, rows (B, n), scores (B, n)).

    `seen` is a CSR (indptr, indices) over query rows; `bias` (m,) is added to every query's
    scores (the model's ranking prior). Padding (fewer than n unmasked movies) is row -1 with
    score -inf. Blocks run on `threads` threads: BLAS and argpartition release the GIL.
    """
    queries = np.asarray(queries, dtype=np.float32)
    matrix = np.asarray(embeddings, dtype=np.float32)
    m = matrix.shape[0]
    et = padded_transpose(matrix)
    norm, prior = max_norm(matrix), 0.0 if bias is None else float(np.abs(bias).max(initial=0.0))

    def work(start: int) -> tuple[int, np.ndarray, np.ndarray]:
        q = queries[start : start + block]
        scores = q @ et
        if bias is not None:
            scores[:, :m] += bias
        scores[:, m:] = NEG_INF
        if seen is not None:
            _mask_block(scores, start, *seen)
        tol = gemm_tolerance(q, norm, prior)
        return (start, *_block_top_n(scores, n, tol, lambda r, c: exact_scores(matrix, bias, q, r, c)))

    starts = range(0, queries.shape[0], block)
    if threads <= 1:
        yield from map(work, starts)
        return
    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(work, starts)


def top_n_batch(
    embeddings: np.ndarray,
    queries: np.ndarray,
    n: int,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    block: int = 256,
    threads: int = 2,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All of `iter_top_n_batch` gathered into (rows (U, n), exact float64 scores (U, n))."""
    u = queries.shape[0]
    rows = np.full((u, n), -1, dtype=np.int64)
    vals = np.full((u, n), -np.inf)
    for start, r, v in iter_top_n_batch(embeddings, queries, n, seen, block, threads, bias):
        rows[start : start + len(r)], vals[start : start + len(r)] = r, v
    return rows, vals


def top_n(
    embeddings: np.ndarray, query: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top n rows for one query with rows in `exclude` masked: (rows, exact scores), by the same
    rule as every batch (it is a batch of one)."""
    exclude = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    seen = (np.array([0, len(exclude)], np.int64), exclude)
    rows, vals = top_n_batch(embeddings, np.asarray(query, np.float32).reshape(1, -1), n, seen, threads=1)
    found = rows[0] >= 0
    return rows[0][found], vals[0][found]
