"""Exact top-N: equal to a brute-force float64 reference, seen movies never returned, ties by id."""

from __future__ import annotations

import numpy as np
import pytest

from movierec_assets.serving import scoring
from movierec_assets.serving.topn import (
    mask_columns,
    padded_rows,
    scores_for,
    seen_csr,
    top_n,
    top_n_batch,
    top_n_columns,
)


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


def test_a_query_scores_the_same_bits_alone_and_in_any_batch() -> None:
    """The serving batcher relies on this: a user's answer must not depend on who shares the batch."""
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((37, 64)).astype(np.float32)
    ep = padded_rows(emb)
    together = scores_for(ep, len(emb), queries)
    assert together.shape == (5056, 37) and np.all(together[len(emb) :] == -np.inf)
    for i in range(37):
        assert np.array_equal(scores_for(ep, len(emb), queries[i : i + 1])[:, 0], together[:, i]), i
    for size in (2, 5, 16):
        assert np.array_equal(scores_for(ep, len(emb), queries[:size]), together[:, :size])
    rows, vals = top_n_columns(together, 10)
    for i in range(0, 37, 5):
        single_rows, single_vals = top_n_columns(scores_for(ep, len(emb), queries[i : i + 1]), 10)
        assert rows[i].tolist() == single_rows[0].tolist() and np.array_equal(vals[i], single_vals[0])
        assert rows[i].tolist() == reference(emb, queries[i], 10, set())


@pytest.mark.parametrize("integer", [True, False])
def test_serving_columns_equal_float64_reference(integer: bool) -> None:
    """The serving path (movies x queries blocks): exact order, ties by row, seen masked, padding."""
    rng = np.random.default_rng(17 if integer else 18)
    for _ in range(30):
        emb, queries, n = random_case(rng, integer)
        users, movies = rng.integers(0, len(queries), 300), rng.integers(0, len(emb), 300)
        scores = scores_for(padded_rows(emb), len(emb), queries)
        mask_columns(scores, movies, users)
        rows, vals = top_n_columns(scores, n)
        for u, q in enumerate(queries):
            expected = reference(emb, q, n, set(movies[users == u].tolist()))
            got = rows[u][rows[u] >= 0].tolist()
            assert got == expected
            assert np.all(vals[u][len(got) :] == -np.inf)
    emb = np.zeros((5000, 3), np.float32)  # every score ties
    scores = scores_for(padded_rows(emb), 5000, np.ones((2, 3), np.float32))
    mask_columns(scores, np.array([0]), np.array([1]))
    assert top_n_columns(scores, 10)[0].tolist() == [list(range(10)), list(range(1, 11))]


@pytest.mark.parametrize("integer", [True, False])
def test_movie_ranges_scored_apart_merge_to_the_same_answer(integer: bool) -> None:
    """top_n_parts over 1, 2 or 3 movie ranges: same rows, same score bits, ties by lower row."""
    rng = np.random.default_rng(27 if integer else 28)
    try:
        for _ in range(20):
            emb, queries, n = random_case(rng, integer)
            users, movies = rng.integers(0, len(queries), 300), rng.integers(0, len(emb), 300)
            ep = padded_rows(emb)
            answers = []
            for parts in (1, 2, 3):
                scoring.set_parts(parts)
                score = lambda lo, hi, ep=ep, m=len(emb), q=queries: scores_for(ep[lo:hi], m - lo, q)  # noqa: E731
                answers.append(scoring.top_n_parts(score, ep.shape[0], n, (movies, users)))
            for rows, vals in answers[1:]:
                assert np.array_equal(rows, answers[0][0]) and np.array_equal(vals, answers[0][1])
            for u, q in enumerate(queries):
                expected = reference(emb, q, n, set(movies[users == u].tolist()))
                assert answers[0][0][u][answers[0][0][u] >= 0].tolist() == expected
    finally:
        scoring.set_parts(2)
