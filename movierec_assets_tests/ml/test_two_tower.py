from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from movierec_assets.ml.pipeline import model_inputs  # noqa: E402
from movierec_assets.ml.train import TrainConfig, train  # noqa: E402
from movierec_assets.ml.two_tower import ColaborativeFiltering, build_model  # noqa: E402
from movierec_assets_tests.ml.planted import planted  # noqa: E402

TINY = {"user_layers": [16], "movie_layers": [16], "embedding": 8}


@pytest.mark.parametrize("extra", [{}, {"id_buckets": 64, "id_dim": 4, "retrieval_weight": 0.2, "user_reg": 1e-4}])
def test_config_round_trip_and_safe_mode_save_load(tmp_path: Path, extra: dict) -> None:
    features, ratings = planted(n_users=20, n_movies=15, per_user=5)
    model = build_model(6, 6, **TINY, **extra)
    model.fit(model_inputs(features, ratings.user_idx, ratings.movie_idx), ratings.rating, epochs=1, verbose=0)
    clone = ColaborativeFiltering.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, ColaborativeFiltering)
    x = model_inputs(features, ratings.user_idx, ratings.movie_idx)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # The towers run alone and give unit vectors.
    tower_in = x["user_features"] if not extra else [x["user_features"], x["user_id"]]
    emb = np.asarray(loaded.user_net.predict(tower_in, verbose=0))
    assert emb.shape == (len(ratings), 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_hash_buckets_accept_unseen_ids() -> None:
    model = build_model(6, 6, **TINY, id_buckets=16)
    feats = np.zeros((3, 6), np.float32)
    emb = np.asarray(model.movie_net.predict([feats, np.array([5, 10**9, 123456], np.int32)], verbose=0))
    assert np.isfinite(emb).all() and emb.shape == (3, 8)


def test_planted_structure_is_learned(tmp_path: Path) -> None:
    features, ratings = planted()
    tr, va = ratings.time_split(0.2)
    cfg = TrainConfig(epochs=25, batch_size=256, user_layers=(32,), movie_layers=(32,), embedding=8,
                      learning_rate=5e-3, patience=5)
    result = train(tr, va, features, tmp_path / "run", cfg)
    baseline = float(np.sqrt(np.mean((va.rating - tr.rating.mean()) ** 2)))
    assert result.val_rmse < 0.7 * baseline, (result.val_rmse, baseline)
    assert result.examples_per_second > 0 and result.n_train == len(tr)


class _Crash(keras.callbacks.Callback):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.after:
            raise RuntimeError("simulated crash")


def test_interrupted_run_resumes_from_checkpoint(tmp_path: Path) -> None:
    features, ratings = planted(n_users=60, n_movies=40, per_user=10)
    tr, va = ratings.time_split(0.2)
    cfg = TrainConfig(epochs=4, batch_size=128, user_layers=(8,), movie_layers=(8,), embedding=4, patience=10)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tr, va, features, run, cfg, extra_callbacks=[_Crash(after=2)])
    assert os.path.exists(run / "checkpoints" / "last.keras")
    result = train(tr, va, features, run, cfg)
    assert result.initial_epoch == 2
    assert result.epochs_run == 2  # epochs 3 and 4 only


def test_history_model_config_round_trips_through_a_safe_mode_save(tmp_path: Path) -> None:
    from movierec_assets.ml import registry
    from movierec_assets.ml.config import ModelConfig

    cfg = TrainConfig(user_layers=(16,), movie_layers=(16,), embedding=8, id_dim=4, history_len=3, temperature=0.07)
    model = build_model(6, 6, movie_vocab=[2, 5, 9], **cfg.model_kwargs())
    model.save(tmp_path / "model.keras")
    loaded = registry.load_model(tmp_path / "model.keras")
    assert loaded.get_config() == model.get_config()
    saved = {k: v for k, v in loaded.get_config().items() if k in ModelConfig.__dataclass_fields__}
    assert ModelConfig.from_dict(saved) == cfg.model_config()
    np.testing.assert_array_equal(np.asarray(loaded.movie_lookup.vocab), [2, 5, 9])


def test_user_tower_with_empty_or_absent_history_is_the_features_only_tower() -> None:
    from movierec_assets.ml.history import PAD_ID, Histories, empty
    from movierec_assets.ml.two_tower import embed, embed_users

    model = build_model(6, 6, movie_vocab=[2, 5, 9], **TINY, id_dim=4, history_len=3)
    feats = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    alone = embed(model.user_net, feats, None)
    np.testing.assert_allclose(embed_users(model, feats, np.arange(3), empty(3, 3)), alone, atol=1e-6)
    np.testing.assert_allclose(embed_users(model, feats, np.arange(3), None), alone, atol=1e-6)
    # Only unknown or rare ids (not in the vocabulary) count as no history; a known one moves the user.
    ids = np.array([[7, 8, PAD_ID], [5, PAD_ID, PAD_ID], [PAD_ID] * 3], np.int32)
    hist = Histories(ids, np.array([[4, 4, 0], [5, 0, 0], [0, 0, 0]], np.float32), np.array([2, 1, 0]))
    out = embed_users(model, feats, np.arange(3), hist)
    np.testing.assert_allclose(out[[0, 2]], alone[[0, 2]], atol=1e-6)
    assert np.abs(out[1] - alone[1]).max() > 1e-4
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
