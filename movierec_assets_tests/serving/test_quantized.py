"""Int8 candidates with an exact re-rank: the error bound holds on hostile matrices, and the answer
is the exact top n (float64 reference), whatever the batch, the movie ranges or the ties."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from movierec_assets.serving import scoring
from movierec_assets.serving.memory import random_state, random_tower
from movierec_assets.serving.quantized import Int8Index, approximate, quantize_queries, tolerances
from movierec_assets.serving.served import Served, use_int8
from movierec_assets.serving.topn import padded_rows
from movierec_assets.serving.tower import l2_normalize

DIMS = 64


def hostile_matrices(rng: np.random.Generator, m: int) -> Iterator[tuple[str, np.ndarray]]:
    yield "unit rows", l2_normalize(rng.standard_normal((m, DIMS)).astype(np.float32))
    yield "norms from 1e-3 to 1e3", (rng.standard_normal((m, DIMS)) * 10 ** rng.uniform(-3, 3, (m, 1))).astype(np.float32)
    spiky = rng.standard_normal((m, DIMS)) * 0.01
    spiky[np.arange(m), rng.integers(0, DIMS, m)] = 50.0  # one huge coordinate per row: coarse int8 steps
    yield "one huge coordinate", spiky.astype(np.float32)
    flat = np.ones((m, DIMS), np.float32)
    flat[::3] = 0.0
    yield "zero and constant rows", flat


def hostile_queries(rng: np.random.Generator) -> Iterator[np.ndarray]:
    yield l2_normalize(rng.standard_normal((17, DIMS)).astype(np.float32))
    mixed = rng.standard_normal((5, DIMS)).astype(np.float32)
    mixed[0] *= 1e3  # one large query sets the batch's int8 scale: the small ones get coarse codes
    mixed[1] *= 1e-3
    yield mixed
    yield np.zeros((1, DIMS), np.float32)


def test_approximate_scores_stay_within_the_proven_bound() -> None:
    rng = np.random.default_rng(5)
    m = 3000
    for name, emb in hostile_matrices(rng, m):
        bias = rng.normal(0.0, 2.0, m).astype(np.float32)
        ep = padded_rows(emb)
        bias_p = np.zeros(ep.shape[0], np.float32)
        bias_p[:m] = bias
        index = Int8Index.build(ep, m, bias_p)
        for queries in hostile_queries(rng):
            codes, scale, error = quantize_queries(queries)
            tol = tolerances(index, queries, error)
            approx = approximate(index, 0, ep.shape[0], codes, scale)
            exact = queries.astype(np.float64) @ emb.astype(np.float64).T + bias
            assert np.all(np.abs(approx[:, :m] - exact) <= tol[:, None]), name
            assert np.all(approx[:, m:] == -np.inf), "padding rows must never be candidates"


def _state(rng: np.random.Generator, m: int, bias_sd: float, duplicate: bool = False):  # type: ignore[no-untyped-def]
    columns = [f"f{i}" for i in range(8)]
    state = random_state("v", np.arange(1, m + 1, dtype=np.int64), DIMS,
                         random_tower(rng, len(columns), [16], DIMS), columns, rng,
                         rng.normal(0.0, bias_sd, m).astype(np.float32))
    if duplicate:  # every movie the same vector and no prior: all scores tie
        state.store.matrix[:] = state.store.matrix[0]
        state.store.bias[:] = 0.0  # type: ignore[index]
    return state


def _served(state, int8: bool) -> Served:  # type: ignore[no-untyped-def]
    use_int8(int8)
    try:
        return Served.build(state)
    finally:
        use_int8(True)


def assert_exact_top_n(served: Served, queries: np.ndarray, rows: np.ndarray, vals: np.ndarray, n: int,
                       mask_rows: np.ndarray, mask_cols: np.ndarray) -> None:
    """Nothing better than the answer is left out (float64), the answer is sorted, nothing seen."""
    emb = served.state.store.matrix.astype(np.float64)
    bias = served.state.store.bias.astype(np.float64)
    for u, q in enumerate(queries):
        scores = emb @ q.astype(np.float64) + bias
        scores[mask_rows[mask_cols == u]] = -np.inf
        got = rows[u][rows[u] >= 0]
        expected_count = min(n, int(np.isfinite(scores).sum()))
        assert len(got) == expected_count and np.all(np.isfinite(scores[got]))
        if not len(got):
            continue
        left_out = np.delete(scores, got)
        assert left_out.max(initial=-np.inf) <= scores[got].min() + 1e-5, u
        assert np.all(np.diff(vals[u][: len(got)]) <= 0)
        np.testing.assert_allclose(vals[u][: len(got)], scores[got], atol=1e-5)


@pytest.mark.parametrize("parts", [1, 3])
def test_int8_top_n_is_the_exact_top_n(parts: int) -> None:
    rng = np.random.default_rng(9 + parts)
    state = _state(rng, 20_000, 0.2)
    fast, exact = _served(state, True), _served(state, False)
    queries = l2_normalize(rng.standard_normal((23, DIMS)).astype(np.float32))
    mask_cols = rng.integers(0, 23, 20_000)
    mask_rows = rng.integers(0, 20_000, 20_000)
    everything = np.arange(20_000 - 5)  # query 7 has rated all but 5 movies
    mask_rows, mask_cols = np.concatenate([mask_rows, everything]), np.concatenate([mask_cols, np.full(len(everything), 7)])
    scoring.set_parts(parts)
    try:
        for n in (1, 10, 100):
            rows, vals = scoring.int8_top_n(fast, queries, n, (mask_rows, mask_cols))
            assert_exact_top_n(fast, queries, rows, vals, n, mask_rows, mask_cols)
            ref_rows, _ = scoring.top_n_parts(lambda lo, hi: scoring.user_scores(exact, queries, lo, hi),
                                              exact.ep.shape[0], n, (mask_rows, mask_cols))
            assert (rows == ref_rows).mean() > 0.99  # the float32 paths differ only on 1e-7 near-ties
    finally:
        scoring.set_parts(2)


def test_int8_ties_resolve_to_the_lower_row() -> None:
    state = _state(np.random.default_rng(4), 5000, 0.0, duplicate=True)
    served = _served(state, True)
    query = l2_normalize(np.random.default_rng(1).standard_normal((2, DIMS)).astype(np.float32))
    rows, vals = scoring.int8_top_n(served, query, 10, (np.array([0, 3]), np.array([1, 1])))
    assert rows[0].tolist() == list(range(10))
    assert rows[1].tolist() == [1, 2, *range(4, 12)]
    assert len(set(vals[0].tolist())) == 1


def test_int8_answers_do_not_depend_on_the_batch() -> None:
    """A user's answer is the same bits alone or beside queries that change the batch's int8 scale."""
    rng = np.random.default_rng(21)
    served = _served(_state(rng, 8000, 0.3), True)
    queries = l2_normalize(rng.standard_normal((12, DIMS)).astype(np.float32))
    queries[3] *= 40.0
    none = np.zeros(0, np.int64)
    together = scoring.int8_top_n(served, queries, 10, (none, none))
    for i in range(len(queries)):
        alone = scoring.int8_top_n(served, queries[i : i + 1], 10, (none, none))
        assert np.array_equal(alone[0][0], together[0][i]) and np.array_equal(alone[1][0], together[1][i]), i


@pytest.mark.parametrize("levels", [127, 63])
def test_both_code_ranges_keep_the_bound_and_pass_the_exactness_check(levels: int) -> None:
    """63 is what CPUs without VNNI get (their int16 pair sums would saturate at 127)."""
    rng = np.random.default_rng(levels)
    emb = l2_normalize(rng.standard_normal((4000, DIMS)).astype(np.float32))
    ep = padded_rows(emb)
    index = Int8Index.build(ep, len(emb), None, levels=levels)
    assert np.abs(index.q).max() == levels
    index.check(0, ep.shape[0])
    queries = l2_normalize(rng.standard_normal((9, DIMS)).astype(np.float32))
    codes, scale, error = quantize_queries(queries)
    approx = approximate(index, 0, ep.shape[0], codes, scale)[:, : len(emb)]
    exact = queries.astype(np.float64) @ emb.astype(np.float64).T
    assert np.all(np.abs(approx - exact) <= tolerances(index, queries, error)[:, None])


def test_inexact_int8_products_fall_back_to_float32() -> None:
    """If the integer products disagree with numpy's (here: the session holds other codes than the
    index), the version is served in float32 instead, with the same answers."""
    rng = np.random.default_rng(31)
    served = _served(_state(rng, 3000, 0.2), True)
    assert served.int8 is not None
    ranges = scoring.part_ranges(served.ep.shape[0])
    assert scoring.warm(served) is served  # exact here: int8 stays on
    for lo, hi in ranges:
        served.int8.session(lo, hi)  # built from the true codes ...
    served.int8.q[:] = np.clip(served.int8.q.astype(np.int16) + 1, -127, 127).astype(np.int8)  # ... which then change
    with pytest.raises(RuntimeError, match="not exact"):
        served.int8.check(*ranges[0])
    fallback = scoring.warm(served)
    assert fallback.int8 is None and fallback.ep is served.ep
    queries = l2_normalize(rng.standard_normal((4, DIMS)).astype(np.float32))
    none = np.zeros(0, np.int64)
    rows, vals = scoring.top_n_parts(lambda lo, hi: scoring.user_scores(fallback, queries, lo, hi),
                                     fallback.ep.shape[0], 10, (none, none))
    assert_exact_top_n(fallback, queries, rows, vals, 10, none, none)
