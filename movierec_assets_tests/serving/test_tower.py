"""The numpy replay of a tower equals the Keras tower it was extracted from."""

from __future__ import annotations

import numpy as np
import pytest

from movierec_assets.serving.online import tower as numpy_tower


@pytest.mark.parametrize("id_buckets", [0, 97])
def test_numpy_tower_equals_keras(id_buckets: int) -> None:
    two_tower = pytest.importorskip("movierec_assets.ml.two_tower")
    model = two_tower.build_model(6, 5, user_layers=[8, 4], movie_layers=[7], embedding=3, id_buckets=id_buckets)
    rng = np.random.default_rng(0)
    for keras_tower, width in ((model.user_net, 6), (model.movie_net, 5)):
        x = rng.standard_normal((40, width)).astype(np.float32)
        ids = rng.integers(0, 2**31 - 1, 40).astype(np.int32)
        expected = np.asarray(keras_tower.predict_on_batch([x, ids] if id_buckets else x))
        replay = numpy_tower.NumpyTower.from_keras(keras_tower)
        np.testing.assert_allclose(replay.forward(x, ids), expected, atol=2e-6)
        norms = np.linalg.norm(replay.forward(x, ids), axis=1)
        assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))  # all-zero pre-norm rows stay zero
        one = replay.encode(x[:1], int(ids[0]))
        np.testing.assert_allclose(one, numpy_tower.KerasEncoder(keras_tower).encode(x[:1], int(ids[0])), atol=2e-6)
    assert isinstance(numpy_tower.encoder_for(model.user_net), numpy_tower.NumpyTower)


def test_hash_constants_match_the_model() -> None:
    two_tower = pytest.importorskip("movierec_assets.ml.two_tower")
    assert (numpy_tower._HASH_MULT, numpy_tower._HASH_MOD) == (two_tower._HASH_MULT, two_tower._HASH_MOD)


def test_a_row_gets_the_same_embedding_alone_and_in_any_batch() -> None:
    """Each row goes through the same (1, F) x (F, H) products whatever the batch (a GEMM's bits
    change with its shape on some CPUs), so comparing bits here is by construction."""
    rng = np.random.default_rng(5)
    from movierec_assets_tests.serving.memory import random_tower

    tower = random_tower(rng, 38, [256, 128], 64)
    x = rng.standard_normal((64, 38)).astype(np.float32)
    ids = np.arange(64)
    together = numpy_tower.encode_rows(tower, x, ids)
    for start, size in ((0, 1), (9, 1), (63, 1), (0, 2), (3, 3), (5, 5), (8, 8), (17, 16), (0, 37)):
        part = numpy_tower.encode_rows(tower, x[start : start + size], ids[start : start + size])
        assert np.array_equal(part, together[start : start + size]), (start, size)
    assert np.array_equal(numpy_tower.encode_rows(tower, x, ids, block=7), together)
