"""The ranking prior travels with the embeddings: PostgreSQL and .npy copies agree, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec_assets.db.migrations import apply_migrations
from movierec_assets.serving.index import embeddings
from movierec_assets.serving.index.embeddings import EmbeddingStore


def _store(version: str) -> EmbeddingStore:
    rng = np.random.default_rng(7)
    ids = np.array([30, 10, 20, 40], np.int32)
    matrix = rng.standard_normal((4, 3)).astype(np.float32)
    return EmbeddingStore.build(version, ids, matrix, bias=np.array([0.3, -0.1, 0.0, 0.25], np.float32))


def test_bias_is_sorted_with_its_movie() -> None:
    store = _store("v")
    assert store.movie_ids.tolist() == [10, 20, 30, 40]
    assert store.bias.tolist() == pytest.approx([-0.1, 0.0, 0.3, 0.25])


def test_no_bias_means_zeros_and_a_wrong_shape_is_refused() -> None:
    store = EmbeddingStore.build("v", np.array([2, 1]), np.ones((2, 3)))
    assert store.bias.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="ranking bias"):
        EmbeddingStore.build("v", np.array([2, 1]), np.ones((2, 3)), bias=np.zeros(3))


def test_bias_round_trips_through_postgres_and_npy(pg_url: str, tmp_path: Path) -> None:
    apply_migrations(pg_url)
    store = _store("bias-roundtrip")
    npy = embeddings.write_npy(tmp_path / "embeddings", store)
    embeddings.write_db(pg_url, store, npy, 0.1)
    from_db = embeddings.read_db(pg_url, store.version)
    from_npy = embeddings.load(pg_url, store.version)
    for loaded in (from_db, from_npy):
        np.testing.assert_array_equal(loaded.bias, store.bias)
        np.testing.assert_array_equal(loaded.matrix, store.matrix)
    (npy / embeddings.BIAS_FILE).unlink()  # a copy without its prior is stale: PostgreSQL answers
    np.testing.assert_array_equal(embeddings.load(pg_url, store.version).bias, store.bias)


def _prior_world(bias: np.ndarray):  # type: ignore[no-untyped-def]
    from movierec_assets_tests.serving.helpers import COLUMNS, DIMS
    from movierec_assets_tests.serving.memory import (
        MemoryBatchUserSource,
        MemoryStateLoader,
        random_state,
        random_tower,
    )

    rng = np.random.default_rng(11)
    movie_ids = np.arange(1, len(bias) + 1, dtype=np.int64) * 3
    state = random_state("prior", movie_ids, DIMS, random_tower(rng, len(COLUMNS), [16], DIMS), COLUMNS, rng, bias)
    users = MemoryBatchUserSource(COLUMNS)
    for u in range(1, 21):
        users.features[u] = rng.standard_normal(len(COLUMNS)).astype(np.float32)
        users.seen[u] = rng.choice(movie_ids, 15, replace=False)
    loader = MemoryStateLoader()
    loader.publish(state)
    return loader, users, state


def test_served_ranking_adds_the_prior_and_equals_a_float64_reference() -> None:
    from movierec_assets.serving.index.topn import top_n_batch
    from movierec_assets.serving.online.recommender import Recommender

    bias = np.random.default_rng(3).normal(0.0, 0.3, 300).astype(np.float32)
    loader, users, state = _prior_world(bias)
    rec = Recommender(loader, users)
    queries = []
    for u in range(1, 21):
        got = rec.recommend(u, 12)
        query = state.encoder.encode(users.features[u][None, :], u).astype(np.float64).reshape(-1)
        queries.append(query)
        scores = state.store.matrix.astype(np.float64) @ query + bias.astype(np.float64)
        scores[state.store.rows_of(users.seen[u])] = -np.inf
        expected = state.store.movie_ids[np.argsort(-scores, kind="stable")[:12]].tolist()
        assert [item.movie_id for item in got.items] == expected
        assert not set(expected) & set(users.seen[u].tolist())
    # The batch table ranks the same way.
    rows, _ = top_n_batch(state.store.matrix, np.array(queries, np.float32), 5, bias=state.store.bias)
    for k, q in enumerate(queries):
        scores = state.store.matrix.astype(np.float64) @ q + bias
        assert rows[k].tolist() == np.argsort(-scores, kind="stable")[:5].tolist()


def test_non_finite_embeddings_or_bias_are_refused() -> None:
    ids = np.array([3, 1, 2])
    matrix = np.ones((3, 4), np.float32)
    matrix[2, 1] = np.nan  # movie 2
    with pytest.raises(ValueError, match="non-finite.*first: movie 2"):
        EmbeddingStore.build("v9", ids, matrix)
    with pytest.raises(ValueError, match="first: movie 3"):
        EmbeddingStore.build("v9", ids, np.ones((3, 4)), bias=np.array([np.inf, 0.0, 0.0]))
