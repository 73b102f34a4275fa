"""Exact top-N retrieval over a movie-embedding matrix, in pure numpy.

Scores are one float32 matrix-vector (or, for batches, matrix-matrix) product. Movies the user has
rated are masked with -inf and never returned. Ties are broken by the lower row index; the stores
keep rows sorted by movie id, so ties resolve to the lower movie id and results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

NEG_INF = np.float32(-np.inf)
CHUNK = 64
_LOWEST = np.float32(-np.finfo(np.float32).max)


def _order(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates sorted by score descending, then by index ascending."""
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def top_n_scores(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n best finite scores (fewer if fewer exist), best first, ties by lower index.

    Masked entries must already be -inf. The n-th largest of the per-chunk maxima is a lower bound
    of the n-th largest score, so one comparison against it keeps every winner and every value tied
    at the cut (the result never depends on an arbitrary choice among equal scores).
    """
    m = scores.shape[0]
    if n <= 0 or m == 0:
        return np.empty(0, dtype=np.int64)
    full = m - m % CHUNK
    n_chunks = full // CHUNK + (m > full)
    if n_chunks > n:
        maxima = np.empty(n_chunks, dtype=scores.dtype)
        maxima[: full // CHUNK] = scores[:full].reshape(-1, CHUNK).max(axis=1)
        if m > full:
            maxima[-1] = scores[full:].max()
        bound = max(np.partition(maxima, n_chunks - n)[n_chunks - n], _LOWEST)
        hot = np.flatnonzero(maxima >= bound)  # only these chunks can hold candidates
        candidates = (hot[:, None] * CHUNK + np.arange(CHUNK)).reshape(-1)
        candidates = candidates[candidates < m]
        candidates = candidates[scores[candidates] >= bound]
    else:
        candidates = np.arange(m)
    best = _order(scores, candidates)[:n]
    return best[scores[best] > NEG_INF]


def top_n(
    embeddings: np.ndarray, query: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top n rows of `embeddings @ query` with rows in `exclude` masked; returns (rows, scores)."""
    scores = embeddings @ np.asarray(query, dtype=np.float32)
    if exclude is not None and len(exclude):
        scores[exclude] = NEG_INF
    rows = top_n_scores(scores, n)
    return rows, scores[rows]


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


def ranked(query: np.ndarray, item: np.ndarray, score: np.ndarray, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The top n items per query from candidate (query, item, score) triples: (items (b, n),
    scores (b, n)), best first, ties by lower item, padded with -1 / -inf."""
    order = np.lexsort((item, -score, query))
    query, item, score = query[order], item[order], score[order]
    rank = np.arange(len(query)) - np.searchsorted(query, np.arange(b))[query]
    keep = rank < n
    out_rows = np.full((b, n), -1, dtype=np.int64)
    out_vals = np.full((b, n), NEG_INF, dtype=np.float32)
    out_rows[query[keep], rank[keep]] = item[keep]
    out_vals[query[keep], rank[keep]] = score[keep]
    return out_rows, out_vals


def _block_top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-row top n of a (B, Mpad) score block (masked, padding -inf); pads with -1 / -inf.
    Comparing against the `group_bound` keeps every winner and every tie at the cut."""
    b, mp = scores.shape
    g = mp // CHUNK
    group_max, nth = group_bound(scores, n)
    bound = np.maximum(nth, _LOWEST)  # never admit masked (-inf) movies
    # Only groups whose maximum reaches the bound can hold candidates: gather just those.
    r, grp = np.nonzero(group_max >= bound[:, None])
    c = (grp[:, None] + np.arange(CHUNK) * g).reshape(-1)
    r = np.repeat(r, CHUNK)
    s = scores[r, c]
    keep = s >= bound[r]
    return ranked(r[keep], c[keep], s[keep], b, n)


# -- serving: movies x queries score blocks --------------------------------------------------------
def padded_rows(embeddings: np.ndarray) -> np.ndarray:
    """(Mpad, d) float32, C-contiguous, Mpad a multiple of CHUNK; padding rows are zero."""
    return np.ascontiguousarray(padded_transpose(embeddings).T)


def scores_for(ep: np.ndarray, m: int, queries: np.ndarray) -> np.ndarray:
    """(Mpad, B) float32 `E @ queries.T` over a `padded_rows` matrix of m movies; padding is -inf.

    Movies-major (E @ Q.T) because OpenBLAS then packs the small operand: 2-row batches cost 1.0
    instead of 2.4 ms. Every column comes from the same GEMM kernel whatever the batch size, so a
    query scores the same bits alone or in any batch (a test checks). A single query is padded to
    two columns: OpenBLAS hands one-column products to gemv, whose sums differ in the last bit.
    """
    q = np.asarray(queries, dtype=np.float32).reshape(-1, ep.shape[1])
    single = q.shape[0] == 1
    scores = ep @ (np.concatenate([q, q]) if single else q).T
    scores = np.ascontiguousarray(scores[:, :1]) if single else scores
    scores[m:] = NEG_INF
    return scores


def mask_columns(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Sets scores[rows[i], cols[i]] to -inf (in a movies x queries block: each query's seen
    movies; the queries x movies blocks pass the pairs the other way round)."""
    scores.reshape(-1)[np.asarray(rows, np.int64) * scores.shape[1] + cols] = NEG_INF


def top_n_columns(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top n of every column of a masked (Mpad, B) block: (rows (B, n), scores (B, n)),
    best first, ties by lower row, padded with -1 / -inf.

    Rows are split into CHUNK-strided groups (j, j+G, ...; G = Mpad / CHUNK), so the group maxima
    are one elementwise max over CHUNK contiguous slabs. The n-th largest group maximum bounds each
    column's n-th largest score from below: comparing against it keeps every winner and every tie.
    """
    mp, b = scores.shape
    g = mp // CHUNK
    group_max = scores.reshape(CHUNK, g, b).max(axis=0)
    if n <= g:
        bound = np.maximum(np.partition(group_max, g - n, axis=0)[g - n], _LOWEST)  # never admit -inf
    else:
        bound = np.full(b, _LOWEST, dtype=np.float32)
    grp, col = np.nonzero(group_max >= bound)  # only these groups can hold candidates
    r = (grp[:, None] + np.arange(CHUNK) * g).reshape(-1)
    c = np.repeat(col, CHUNK)
    s = scores[r, c]
    keep = s >= bound[c]
    return ranked(c[keep], r[keep], s[keep], b, n)


def merge_top_n(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top n of the union of per-part top n lists (rows already global), best first,
    ties by lower row; -1 / -inf padding sorts last. Each part's top n holds every global winner
    that lives in the part, so the union holds them all."""
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
    m = embeddings.shape[0]
    et = padded_transpose(embeddings)

    def work(start: int) -> tuple[int, np.ndarray, np.ndarray]:
        scores = queries[start : start + block] @ et
        if bias is not None:
            scores[:, :m] += bias
        scores[:, m:] = NEG_INF
        if seen is not None:
            _mask_block(scores, start, *seen)
        return (start, *_block_top_n(scores, n))

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
    """All of `iter_top_n_batch` gathered into (rows (U, n), scores (U, n))."""
    u = queries.shape[0]
    rows = np.full((u, n), -1, dtype=np.int64)
    vals = np.full((u, n), NEG_INF, dtype=np.float32)
    for start, r, v in iter_top_n_batch(embeddings, queries, n, seen, block, threads, bias):
        rows[start : start + len(r)], vals[start : start + len(r)] = r, v
    return rows, vals
