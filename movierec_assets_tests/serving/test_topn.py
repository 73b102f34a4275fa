"""Exact top-N: equal to a brute-force float64 reference, seen movies never returned, ties by id, and
the same answer whatever the batch: no test here assumes BLAS gives a query the same float32 bits
in batches of different shapes (OpenBLAS' Haswell kernels do not)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from movierec_assets.serving.index.topn import (
    exact_scores,
    gemm_tolerance,
    mask_columns,
    max_norm,
    padded_rows,
    scores_for,
    seen_csr,
    top_n,
    top_n_batch,
    top_n_columns,
)
from movierec_assets.serving.online import candidates

SCORE_ATOL = 1e-9  # exact float64 scores against a float64 BLAS reference (both ~1e-15 from the truth)


def columns_top_n(emb: np.ndarray, queries: np.ndarray, n: int, mask: tuple[np.ndarray, np.ndarray] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The serving rule on one movies x queries block: float32 candidates, exact re-rank."""
    ep = padded_rows(emb)
    scores = scores_for(ep, len(emb), queries)
    if mask is not None:
        mask_columns(scores, *mask)
    tol = gemm_tolerance(queries, max_norm(emb), 0.0)
    return top_n_columns(scores, n, tol, lambda r, c: exact_scores(ep, None, queries, r, c))


def reference(embeddings: np.ndarray, query: np.ndarray, n: int, seen: set[int]) -> list[int]:
    """Float64 scores, every row scored, sorted by (-score, row) in plain Python."""
    scores = embeddings.astype(np.float64) @ query.astype(np.float64)
    rows = [r for r in range(len(scores)) if r not in seen]
    return sorted(rows, key=lambda r: (-scores[r], r))[:n]


def random_case(rng: np.random.Generator, integer: bool) -> tuple[np.ndarray, np.ndarray, int]:
    m = int(rng.integers(1, 400)) if rng.random() < 0.5 else int(rng.integers(400, 3000))
    if integer:  # small integers: float32 products are exact and ties are everywhere
        emb = rng.integers(-2, 3, (m, 4)).astype(np.float32)
        queries = rng.integers(-2, 3, (9, 4)).astype(np.float32)
    else:
        emb = rng.standard_normal((m, 16)).astype(np.float32)
        queries = rng.standard_normal((9, 16)).astype(np.float32)
    return emb, queries, int(rng.integers(1, 30))


@pytest.mark.parametrize("integer", [True, False])
def test_single_and_batch_equal_float64_reference(integer: bool) -> None:
    rng = np.random.default_rng(7 if integer else 8)
    for _ in range(30):
        emb, queries, n = random_case(rng, integer)
        users = rng.integers(0, len(queries), 300)
        movies = rng.integers(0, len(emb), 300)
        indptr, indices = seen_csr(users, movies, len(queries))
        batch_rows, batch_scores = top_n_batch(emb, queries, n, (indptr, indices), block=4)
        for u, q in enumerate(queries):
            seen = set(movies[users == u].tolist())
            expected = reference(emb, q, n, seen)
            rows, scores = top_n(emb, q, n, np.array(sorted(seen), dtype=np.int64))
            assert rows.tolist() == expected
            assert not seen & set(rows.tolist())
            np.testing.assert_allclose(scores, emb[rows].astype(np.float64) @ q, atol=1e-4)
            got = batch_rows[u][batch_rows[u] >= 0].tolist()
            assert got == expected
            assert np.all(batch_scores[u][len(got):] == -np.inf)


def test_ties_resolve_to_lower_row_and_fewer_than_n_unseen() -> None:
    emb = np.ones((5, 2), np.float32)  # every movie scores the same
    rows, _ = top_n(emb, np.array([1, 0], np.float32), 3, np.array([0, 2]))
    assert rows.tolist() == [1, 3, 4]
    rows, _ = top_n(emb, np.array([1, 0], np.float32), 10, np.array([1]))
    assert rows.tolist() == [0, 2, 3, 4]
    batch, _ = top_n_batch(emb, np.array([[1, 0]], np.float32), 10, seen_csr(np.array([0]), np.array([1]), 1))
    assert batch[0].tolist() == [0, 2, 3, 4] + [-1] * 6


def test_everything_seen_returns_nothing() -> None:
    emb = np.eye(3, dtype=np.float32)
    rows, scores = top_n(emb, np.ones(3, np.float32), 2, np.arange(3))
    assert rows.size == 0 and scores.size == 0


def test_batch_many_blocks_and_threads_agree_with_single() -> None:
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((700, 32)).astype(np.float32)
    users, movies = rng.integers(0, 700, 20000), rng.integers(0, 3000, 20000)
    seen = seen_csr(users, movies, 700)
    rows, _ = top_n_batch(emb, queries, 10, seen, block=64, threads=2)
    for u in range(0, 700, 37):
        expected, _ = top_n(emb, queries[u], 10, seen[1][seen[0][u] : seen[0][u + 1]])
        assert rows[u].tolist() == expected.tolist()


def test_all_equal_scores_on_a_large_catalogue() -> None:
    emb = np.zeros((5000, 3), np.float32)  # every score ties (e.g. identical cold-start movies)
    rows, _ = top_n(emb, np.ones(3, np.float32), 10, np.array([0, 3]))
    assert rows.tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    batch, _ = top_n_batch(emb, np.ones((2, 3), np.float32), 10, seen_csr(np.array([1]), np.array([0]), 2))
    assert batch.tolist() == [list(range(10)), list(range(1, 11))]


def test_a_query_gets_the_same_answer_alone_and_in_any_batch() -> None:
    """The serving batcher relies on this: a user's answer must not depend on who shares the batch.
    BLAS scores may differ in the last bits between shapes, but stay within the proven bound."""
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((37, 64)).astype(np.float32)
    ep = padded_rows(emb)
    exact = queries.astype(np.float64) @ emb.astype(np.float64).T
    tol = gemm_tolerance(queries, max_norm(emb), 0.0)
    for size in (1, 2, 3, 5, 16, 37):
        approx = scores_for(ep, len(emb), queries[:size])
        assert approx.shape == (5056, size) and np.all(approx[len(emb) :] == -np.inf)
        assert np.all(np.abs(approx[: len(emb)].T - exact[:size]) <= tol[:size, None]), size
    rows, vals = columns_top_n(emb, queries, 10)
    for start, size in ((0, 1), (5, 1), (36, 1), (3, 2), (7, 5), (20, 16)):
        part_rows, part_vals = columns_top_n(emb, queries[start : start + size], 10)
        assert np.array_equal(part_rows, rows[start : start + size]), (start, size)
        np.testing.assert_allclose(part_vals, vals[start : start + size], rtol=0, atol=SCORE_ATOL)
    for i in range(0, 37, 5):
        assert rows[i].tolist() == reference(emb, queries[i], 10, set())


def test_near_ties_below_float32_resolution_follow_the_exact_scores() -> None:
    """Movies whose scores differ by less than float32 BLAS can tell apart (300 of them get 4
    distinct float32 scores): the answer follows the exact order, ties by lower row, alone, in any
    batch and in the batch path; a cut not widened by the error bound would lose winners."""
    rng = np.random.default_rng(12)
    base = rng.standard_normal(64).astype(np.float32)
    emb = np.repeat(base[None], 300, axis=0)
    emb += (rng.integers(-1, 2, (300, 64)) * np.spacing(np.abs(base))).astype(np.float32)  # +-1 ulp
    emb[150:160] = emb[149]  # exact ties
    emb = np.concatenate([emb, rng.standard_normal((700, 64)).astype(np.float32) * 0.01])
    queries = (np.abs(rng.standard_normal((5, 64))) * np.sign(base)).astype(np.float32)
    real = [math.fsum(e * q for e, q in zip(row, queries[0].astype(np.float64), strict=True))
            for row in emb.astype(np.float64).tolist()]  # correctly rounded: equal rows tie exactly
    approx = scores_for(padded_rows(emb), len(emb), queries[:1])[: len(emb), 0]
    for n in (1, 3, 10, 40):
        expected = sorted(range(len(emb)), key=lambda r: (-real[r], r))[:n]
        assert expected != sorted(range(len(emb)), key=lambda r: (-approx[r], r))[:n]  # float32 cannot tell
        rows, _ = columns_top_n(emb, queries, n)
        alone, _ = columns_top_n(emb, queries[:1], n)
        batch, _ = top_n_batch(emb, queries, n, block=2)
        assert rows[0].tolist() == alone[0].tolist() == batch[0].tolist() == expected, n


@pytest.mark.parametrize("integer", [True, False])
def test_serving_columns_equal_float64_reference(integer: bool) -> None:
    """The serving path (movies x queries blocks): exact order, ties by row, seen masked, padding."""
    rng = np.random.default_rng(17 if integer else 18)
    for _ in range(30):
        emb, queries, n = random_case(rng, integer)
        users, movies = rng.integers(0, len(queries), 300), rng.integers(0, len(emb), 300)
        rows, vals = columns_top_n(emb, queries, n, (movies, users))
        for u, q in enumerate(queries):
            expected = reference(emb, q, n, set(movies[users == u].tolist()))
            got = rows[u][rows[u] >= 0].tolist()
            assert got == expected
            assert np.all(vals[u][len(got) :] == -np.inf)
    emb = np.zeros((5000, 3), np.float32)  # every score ties
    got, _ = columns_top_n(emb, np.ones((2, 3), np.float32), 10, (np.array([0]), np.array([1])))
    assert got.tolist() == [list(range(10)), list(range(1, 11))]


@pytest.mark.parametrize("integer", [True, False])
def test_movie_ranges_scored_apart_merge_to_the_same_answer(integer: bool) -> None:
    """top_n_parts over 1, 2 or 3 movie ranges: same rows and order, the same exact scores (they come
    from no BLAS call), ties by lower row."""
    rng = np.random.default_rng(27 if integer else 28)
    try:
        for _ in range(20):
            emb, queries, n = random_case(rng, integer)
            users, movies = rng.integers(0, len(queries), 300), rng.integers(0, len(emb), 300)
            ep = padded_rows(emb)
            answers = []
            tol = gemm_tolerance(queries, max_norm(emb), 0.0)
            for parts in (1, 2, 3):
                candidates.set_parts(parts)
                answers.append(candidates.top_n_parts(ep, len(emb), None, queries, n, (movies, users), tol))
            for rows, vals in answers[1:]:
                assert np.array_equal(rows, answers[0][0]) and np.array_equal(vals, answers[0][1])
            for u, q in enumerate(queries):
                expected = reference(emb, q, n, set(movies[users == u].tolist()))
                assert answers[0][0][u][answers[0][0][u] >= 0].tolist() == expected
    finally:
        candidates.set_parts(2)
