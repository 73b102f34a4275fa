"""The numpy history-aware user tower equals Keras' `user_vector` / `embed_users` on a trained tiny
model, and the histories serving builds from rated movies (newest first) equal ml/history.py's."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from movierec_assets.serving.online.history_tower import HistoryEncoder, encoder_for_model, rated_inputs
from movierec_assets.serving.online.tower import encode_rows

N_HIST = 6
VOCAB = np.arange(10, 40, dtype=np.int32)  # movies with an ID row
CATALOGUE = np.arange(1, 50, dtype=np.int64)  # the served movies: 1..9 and 40..49 have no ID row
TOLERANCE = 1e-5  # numpy replay vs Keras (float32, different summation orders)


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    two_tower = pytest.importorskip("movierec_assets.ml.two_tower")
    import keras

    from movierec_assets.ml.history import empty

    keras.utils.set_random_seed(7)
    m = two_tower.build_model(5, 4, movie_vocab=VOCAB, user_layers=[8], movie_layers=[8], embedding=6,
                              id_dim=4, history_len=N_HIST, history_layers=[8], history_dropout=0.0)
    rng = np.random.default_rng(0)
    k = 256
    hist = empty(k, N_HIST)
    hist.movie_ids[:, :4] = rng.choice(VOCAB, (k, 4))
    hist.ratings[:, :4] = rng.integers(1, 11, (k, 4)) / 2
    x = {two_tower.USER_FEATURES: rng.standard_normal((k, 5)).astype(np.float32),
         two_tower.MOVIE_FEATURES: rng.standard_normal((k, 4)).astype(np.float32),
         two_tower.USER_ID: np.arange(k, dtype=np.int32), two_tower.MOVIE_ID: rng.choice(VOCAB, k),
         **hist.inputs()}
    m.fit(x, rng.integers(1, 11, k) / 2, epochs=3, batch_size=64, verbose=0)
    return m


def _users(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rated movies newest first: empty, short, exactly N, longer than N, unknown ids (not in the
    catalogue: skipped), movies without an ID row (masked), only unknown ids, repeats."""
    out = [(np.zeros(0, np.int64), np.zeros(0, np.float32))]
    for ids in ([12], [11, 13, 15], list(range(20, 26)), list(range(10, 30)), [999, 12, -5, 14, 5000, 16],
                [3, 41, 12, 5, 44, 45, 46, 47, 48], [777, 888], [12, 12, 13, 12]):
        out.append((np.array(ids, np.int64), (rng.integers(1, 11, len(ids)) / 2).astype(np.float32)))
    for _ in range(20):
        size = int(rng.integers(0, 15))
        ids = rng.choice(np.concatenate([CATALOGUE, [500, 600]]), size)
        out.append((ids.astype(np.int64), (rng.integers(1, 11, size) / 2).astype(np.float32)))
    return out


def _rows_of(ids: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(CATALOGUE, ids), len(CATALOGUE) - 1)
    return np.where(CATALOGUE[pos] == ids, pos, -1)


def _reference_histories(users: list[tuple[np.ndarray, np.ndarray]]):  # type: ignore[no-untyped-def]
    """ml/history.py's histories from (user, movie, rating, rated_at) rows (newest first = latest)."""
    from movierec_assets.ml.history import histories_for_users

    rows = []
    for u, (ids, stars) in enumerate(users):
        for k, (m, r) in enumerate(zip(ids.tolist(), stars.tolist(), strict=True)):
            rows.append((u, m, r, datetime.fromtimestamp(10_000 - k, UTC)))  # position 0 is the newest
    frame = pl.DataFrame(rows, schema={"user_id": pl.Int64, "movie_id": pl.Int64, "rating": pl.Float32,
                                       "rated_at": pl.Datetime("us", "UTC")}, orient="row")
    return histories_for_users(frame, np.arange(len(users)), N_HIST, known_movie_ids=CATALOGUE)


def test_numpy_history_encoder_matches_keras(model) -> None:  # type: ignore[no-untyped-def]
    from movierec_assets.ml.two_tower import embed_users

    rng = np.random.default_rng(1)
    users = _users(rng)
    got = rated_inputs(_rows_of, [u[0] for u in users], [u[1] for u in users], N_HIST)
    ref = _reference_histories(users)
    assert got.history is not None
    np.testing.assert_array_equal(got.history[0], ref.movie_ids)  # the same newest N, -1 padded
    np.testing.assert_array_equal(got.history[1], ref.ratings)
    assert got.skipped == ref.skipped_unknown == 3 + 2 + int(sum(np.isin(u[0], [500, 600]).sum() for u in users[9:]))
    assert got.truncated == ref.truncated_users
    encoder = encoder_for_model(model)
    assert isinstance(encoder, HistoryEncoder) and encoder.history_len == N_HIST
    x = rng.standard_normal((len(users), 5)).astype(np.float32)
    ids = np.arange(len(users))
    expected = embed_users(model, x, ids, ref)
    replay = encode_rows(encoder, x, ids, history=got.history)
    np.testing.assert_allclose(replay, expected, rtol=0, atol=TOLERANCE)
    # No usable history (empty, unknown ids only, no ID rows): the feature tower alone.
    features_only = encode_rows(encoder.features, x, ids)
    for u in (0, 7):
        np.testing.assert_allclose(replay[u], features_only[u], rtol=0, atol=TOLERANCE)
    assert not np.allclose(replay[3], features_only[3], atol=1e-3)  # a real history moves the vector


def test_a_user_gets_the_same_bits_alone_and_in_any_batch(model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    users = _users(rng)
    inputs = rated_inputs(_rows_of, [u[0] for u in users], [u[1] for u in users], N_HIST)
    assert inputs.history is not None
    encoder = encoder_for_model(model)
    x = rng.standard_normal((len(users), 5)).astype(np.float32)
    ids = np.arange(len(users))
    together = encode_rows(encoder, x, ids, history=inputs.history)
    for start, size in ((0, 1), (3, 1), (4, 1), (0, 2), (2, 5), (5, 8), (1, len(users) - 1)):
        part = slice(start, start + size)
        alone = encode_rows(encoder, x[part], ids[part], history=(inputs.history[0][part], inputs.history[1][part]))
        assert np.array_equal(alone, together[part]), (start, size)
    assert np.array_equal(encode_rows(encoder, x, ids, block=3, history=inputs.history), together)
