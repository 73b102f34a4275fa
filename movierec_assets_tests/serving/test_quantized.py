"""Int8 candidates with an exact re-rank: the error bound holds on hostile matrices, and the answer
is the exact top n (float64 reference), whatever the batch, the movie ranges or the ties. The code
range follows what this CPU sums exactly (`weight_levels`, then `check`); CPUs we do not have are
simulated by kernels that add products the way they do (int16 pair sums without VNNI)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from movierec_assets.serving.index.quantized import (
    CPU_FLAGS_ENV,
    FULL_LEVELS,
    SAFE_LEVELS,
    ZERO_POINT,
    Int8Index,
    NotExact,
    approximate,
    quantize_queries,
    tolerances,
    weight_levels,
)
from movierec_assets.serving.index.topn import padded_rows
from movierec_assets.serving.online import candidates
from movierec_assets.serving.online.served import Served, use_int8
from movierec_assets.serving.online.tower import l2_normalize
from movierec_assets_tests.serving.memory import random_state, random_tower

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
    candidates.set_parts(parts)
    try:
        for n in (1, 10, 100):
            rows, vals = candidates.int8_top_n(fast, queries, n, (mask_rows, mask_cols))
            assert_exact_top_n(fast, queries, rows, vals, n, mask_rows, mask_cols)
            ref_rows, ref_vals = candidates.float32_top_n(exact, queries, n, (mask_rows, mask_cols))
            assert np.array_equal(rows, ref_rows)  # one exact re-rank rule: the same answer from either pass
            np.testing.assert_allclose(vals, ref_vals, rtol=0, atol=1e-12)
    finally:
        candidates.set_parts(2)


def test_int8_ties_resolve_to_the_lower_row() -> None:
    state = _state(np.random.default_rng(4), 5000, 0.0, duplicate=True)
    served = _served(state, True)
    query = l2_normalize(np.random.default_rng(1).standard_normal((2, DIMS)).astype(np.float32))
    rows, vals = candidates.int8_top_n(served, query, 10, (np.array([0, 3]), np.array([1, 1])))
    assert rows[0].tolist() == list(range(10))
    assert rows[1].tolist() == [1, 2, *range(4, 12)]
    assert len(set(vals[0].tolist())) == 1


def test_int8_answers_do_not_depend_on_the_batch() -> None:
    """A user's answer is the same alone or beside queries that change the batch's int8 scale."""
    rng = np.random.default_rng(21)
    served = _served(_state(rng, 8000, 0.3), True)
    queries = l2_normalize(rng.standard_normal((12, DIMS)).astype(np.float32))
    queries[3] *= 40.0
    none = np.zeros(0, np.int64)
    together = candidates.int8_top_n(served, queries, 10, (none, none))
    for i in range(len(queries)):
        alone = candidates.int8_top_n(served, queries[i : i + 1], 10, (none, none))
        assert np.array_equal(alone[0][0], together[0][i]), i
        np.testing.assert_allclose(alone[1][0], together[1][i], rtol=0, atol=1e-12)


class Int16Kernel:
    """ONNX Runtime's u8 x s8 products the way a CPU without VNNI adds them: `group` adjacent
    products in saturating int16 (VPMADDUBSW: 2), then exactly in int32; the zero point, scales and
    prior as `MatMulIntegerToFloat` applies them. `group=None`: a whole row in int16 (never exact)."""

    def __init__(self, group: int | None) -> None:
        self.group, self.ranges = group, 0

    def __call__(self, q: np.ndarray, step: np.ndarray, bias: np.ndarray) -> Int16Kernel:
        session = Int16Kernel(self.group)
        session.q, session.step, session.bias = q.astype(np.int64), step.astype(np.float64), bias.astype(np.float64)
        self.ranges += 1
        return session

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        a = feeds["q"].astype(np.int64)
        b, d = a.shape
        g = self.group or d
        products = (a[:, None, :] * self.q[None, :, :]).reshape(b, len(self.q), d // g, g)
        sums = np.clip(products.sum(axis=3), -(2**15), 2**15 - 1).sum(axis=2) - ZERO_POINT * self.q.sum(axis=1)
        return [(sums * float(feeds["scale"]) * self.step + self.bias).astype(np.float32)]


def test_weight_levels_follow_the_cpu_and_an_unknown_cpu_gets_the_safe_range(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    assert weight_levels("x86_64", "flags : fpu sse2 ssse3 avx avx2 fma") == SAFE_LEVELS  # Haswell, EPYC Rome
    assert weight_levels("x86_64", "flags : avx2 avx512f avx512bw") == SAFE_LEVELS  # Skylake-X: no VNNI
    assert weight_levels("x86_64", "flags : avx2 avx512f avx512_vnni") == FULL_LEVELS
    assert weight_levels("AMD64", "avx2 avx_vnni") == FULL_LEVELS
    assert weight_levels("aarch64") == FULL_LEVELS
    assert weight_levels("riscv64") == weight_levels("ppc64le") == SAFE_LEVELS  # unknown architectures
    assert weight_levels("x86_64", cpuinfo=tmp_path / "absent") == SAFE_LEVELS  # flags unreadable
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2 fma")  # how CI runs everything as on a CPU without VNNI
    assert weight_levels("x86_64") == SAFE_LEVELS
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2 avx512_vnni")
    assert weight_levels("x86_64") == FULL_LEVELS


@pytest.mark.parametrize("levels", [FULL_LEVELS, SAFE_LEVELS])
def test_each_code_range_keeps_the_bound_where_exact_and_falls_back_where_not(levels: int) -> None:
    """Where this CPU sums the codes exactly (always for its own `weight_levels()`), the bound holds;
    where it does not (8-bit codes without VNNI), the check refuses them and `warm` serves the
    version exactly anyway (63-level codes or float32)."""
    rng = np.random.default_rng(levels)
    state = _state(rng, 4000, 0.3)
    served = _served(state, True)
    index = Int8Index.build(served.ep, served.movies, served.bias_p, levels=levels)
    assert np.abs(index.q).max() == levels
    try:
        index.check(0, served.ep.shape[0])
    except NotExact:
        assert levels > weight_levels(), "the code range weight_levels() picks must be exact on this CPU"
        warmed = candidates.warm(dataclasses.replace(served, int8=index))
        assert warmed.int8 is None or warmed.int8.levels < levels
        assert (warmed.int8 is None) == (warmed.scoring_fallback is not None)
        served = warmed
    else:
        queries = l2_normalize(rng.standard_normal((9, DIMS)).astype(np.float32))
        codes, scale, error = quantize_queries(queries)
        approx = approximate(index, 0, served.ep.shape[0], codes, scale)[:, : served.movies]
        exact = queries.astype(np.float64) @ served.ep[: served.movies].astype(np.float64).T + state.store.bias
        assert np.all(np.abs(approx - exact) <= tolerances(index, queries, error)[:, None])
        served = dataclasses.replace(served, int8=index)
    queries = l2_normalize(rng.standard_normal((6, DIMS)).astype(np.float32))
    none = np.zeros(0, np.int64)
    top = candidates.float32_top_n if served.int8 is None else candidates.int8_top_n
    rows, vals = top(served, queries, 10, (none, none))
    assert_exact_top_n(served, queries, rows, vals, 10, none, none)


def test_without_vnni_8bit_codes_fail_the_check_and_63_levels_serve_the_same_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    """A simulated CPU without VNNI (int16 pair sums): 127-level codes saturate, the check says so,
    and the version is served with 63-level codes, which it sums exactly: same answers as float32."""
    rng = np.random.default_rng(41)
    served = _served(_state(rng, 3000, 0.2), True)
    kernel = Int16Kernel(2)
    served = dataclasses.replace(served, int8=Int8Index.build(served.ep, served.movies, served.bias_p,
                                                               FULL_LEVELS, kernel))
    with pytest.raises(NotExact, match="127-level"):
        served.int8.check(0, served.ep.shape[0])  # type: ignore[union-attr]
    with caplog.at_level(logging.INFO, logger=candidates.__name__):
        warmed = candidates.warm(served)
    assert warmed.int8 is not None and warmed.int8.levels == SAFE_LEVELS and warmed.int8.make_session is kernel
    assert warmed.scoring == "int8" and warmed.scoring_fallback is None
    [line] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "not exact" in line.getMessage() and "63-level" in line.getMessage()
    queries = l2_normalize(rng.standard_normal((7, DIMS)).astype(np.float32))
    mask = (rng.integers(0, 3000, 500), rng.integers(0, 7, 500))
    rows, vals = candidates.int8_top_n(warmed, queries, 10, mask)
    ref_rows, ref_vals = candidates.float32_top_n(warmed, queries, 10, mask)
    assert np.array_equal(rows, ref_rows)
    np.testing.assert_allclose(vals, ref_vals, rtol=0, atol=1e-12)
    assert_exact_top_n(warmed, queries, rows, vals, 10, *mask)


def test_a_cpu_that_sums_no_code_range_exactly_serves_float32_and_says_so_in_health_and_log(
        caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from movierec_assets.serving.online.api import create_app
    from movierec_assets_tests.serving.helpers import make_world

    world = make_world(n_movies=3000)
    use_int8(False)
    try:
        reference = world.recommender()
        use_int8(True, make_session=Int16Kernel(None))
        with caplog.at_level(logging.INFO, logger=candidates.__name__):
            rec = world.recommender()
    finally:
        use_int8(True)
    health = rec.health()
    assert health["scoring"] == "float32" and "not exact" in health["scoring_fallback"]
    assert reference.health()["scoring_fallback"] is None
    [line] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "scoring in float32" in line.getMessage() and health["scoring_fallback"] in line.getMessage()
    for user in range(1, 41):
        got, expected = rec.recommend(user, 10), reference.recommend(user, 10)
        assert [i.movie_id for i in got.items] == [i.movie_id for i in expected.items]
    with TestClient(create_app(lambda: rec)) as client:
        body = client.get("/health").json()
    assert body["scoring"] == "float32" and body["scoring_fallback"] == health["scoring_fallback"]


def test_changed_codes_fail_the_check_and_the_version_is_still_served_exactly() -> None:
    """If the integer products disagree with numpy's (here: the sessions hold other codes than the
    index), the check says so and `warm` rebuilds or falls back: the answers stay exact."""
    rng = np.random.default_rng(31)
    served = _served(_state(rng, 3000, 0.2), True)
    assert served.int8 is not None
    ranges = candidates.part_ranges(served.ep.shape[0])
    assert candidates.warm(served) is served  # exact here: int8 stays on
    for lo, hi in ranges:
        served.int8.session(lo, hi)  # built from the true codes ...
    served.int8.q[:] = np.clip(served.int8.q.astype(np.int16) + 1, -127, 127).astype(np.int8)  # ... which then change
    with pytest.raises(NotExact, match="not exact"):
        served.int8.check(*ranges[0])
    fallback = candidates.warm(served)
    assert fallback.int8 is not served.int8 and fallback.ep is served.ep
    queries = l2_normalize(rng.standard_normal((4, DIMS)).astype(np.float32))
    none = np.zeros(0, np.int64)
    top = candidates.float32_top_n if fallback.int8 is None else candidates.int8_top_n
    rows, vals = top(fallback, queries, 10, (none, none))
    assert_exact_top_n(fallback, queries, rows, vals, 10, none, none)
