"""The ranking prior travels with the embeddings: PostgreSQL and .npy copies agree, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec_assets.db.migrations import apply_migrations
from movierec_assets.serving import embeddings
from movierec_assets.serving.embeddings import EmbeddingStore


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
