"""The history-aware two-tower rating and retrieval model, written with `keras.ops` only.

Importing this module imports Keras (and so TensorFlow): never import it from a module that
definitions.py loads at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import keras_rs
import numpy as np
from keras import ops

from movierec_assets.ml.config import ModelConfig
from movierec_assets.ml.history import HISTORY_IDS, HISTORY_RATINGS, empty
from movierec_assets.ml.tower_layers import (  # noqa: F401  (_HASH_*: serving checks they match)
    _HASH_MOD,
    _HASH_MULT,
    IdHashEmbedding,
    MovieIdLookup,
    build_history_net,
    build_tower,
    id_table,
    masked_softmax_loss,
)

USER_FEATURES = "user_features"
MOVIE_FEATURES = "movie_features"
USER_ID = "user_id"
MOVIE_ID = "movie_id"
# Training-only inputs (the pipeline adds them; inference never passes them, and then no
# retrieval loss is added): the label, log q(movie) (its share of the training ratings, for the
# logQ correction of in-batch negatives), and uniform random negatives with their log probability.
TRAIN_RATING = "train_rating"
TRAIN_MOVIE_LOGQ = "train_movie_logq"
TRAIN_NEG_FEATURES = "train_neg_features"
TRAIN_NEG_IDS = "train_neg_ids"
TRAIN_NEG_LOGQ = "train_neg_logq"
_BASE_KWARGS = ("name", "trainable", "dtype")


@keras.saving.register_keras_serializable(package="movierec")
class ColaborativeFiltering(keras.Model):
    """Two-tower model: rating = offset + scale * cosine(user, movie); top-N by the cosine.

    The class name keeps the original design's spelling ("Colaborative", one "l") so that the
    original code's references and saved configs keep working.

    Movie tower (`movie_net`): scaled features, plus a learned ID embedding for the `n_movie_ids`
    movies with at least `id_min_ratings` training ratings; every other movie uses the shared
    "rare" row and is carried by its features. Inputs [features (B, F) float32, movie_id (B,) int32].

    User tower: `user_net` maps the user's features alone to a unit vector (this is all today's
    serving calls). With a history (see ml/history.py for `history_movie_ids`/`history_ratings`),
    the user vector is L2(user_net(features) + history_net(pool)), where pool is the mean and the
    rating-centred mean of the history's ID embeddings (the movie tower's own table) and its log
    length. An empty or absent history adds nothing, so such a user is scored from aggregates only,
    like a cold user; a user who rated movies after training is personalised with no retraining.

    Hyperparameters are exactly `ModelConfig`'s fields (ml/config.py), which `get_config` returns.
    """

    def __init__(self, n_user_features: int, n_movie_features: int, n_movie_ids: int = 0, **kwargs: Any) -> None:
        base = {k: kwargs.pop(k) for k in _BASE_KWARGS if k in kwargs}
        super().__init__(**base)
        self.hparams = ModelConfig.from_dict(kwargs)
        c = self.hparams
        self.n_user_features, self.n_movie_features = int(n_user_features), int(n_movie_features)
        self.n_movie_ids = int(n_movie_ids)
        self.embedding = c.embedding
        self.id_buckets = c.id_buckets
        self.uses_history = c.history_len > 0 and self.n_movie_ids > 0
        ids = None
        if self.n_movie_ids:
            self.movie_lookup = MovieIdLookup(self.n_movie_ids, name="movie_id_lookup")
            self.movie_table = id_table(self.n_movie_ids, c.id_dim, c.movie_reg)
            ids = (self.movie_lookup, self.movie_table)
        self.user_net = build_tower("user", self.n_user_features, list(c.user_layers), c.embedding, c.user_reg,
                                    c.id_buckets, c.id_dim)
        self.movie_net = build_tower("movie", self.n_movie_features, list(c.movie_layers), c.embedding, c.movie_reg,
                                     0 if ids else c.id_buckets, c.id_dim, ids if c.movie_tower_ids else None)
        if self.uses_history:
            self.seed_generator = keras.random.SeedGenerator(0, name="history_dropout_seed")
            self.history_net = build_history_net(c.id_dim, list(c.history_layers), c.embedding, c.user_reg)
        # The ranking prior: top-N ranks by cosine + movie_features @ rank_weights. Not trained by
        # gradient: fitted on the validation split after training (ml/ranking.py); zeros = none.
        self.rank_weights = self.add_weight(
            shape=(self.n_movie_features,), initializer="zeros", trainable=False, name="rank_weights"
        )
        self.scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.25), name="scale")
        self.offset = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.75), name="offset")
        self.logq_correction = keras_rs.layers.SamplingProbabilityCorrection(name="logq_correction")

    def set_movie_vocab(self, movie_ids: Any) -> None:
        """The movies that get their own ID row: sorted ascending, exactly `n_movie_ids` of them."""
        ids = np.asarray(movie_ids, np.int32)
        if len(ids) != self.n_movie_ids or (len(ids) > 1 and not np.all(np.diff(ids) > 0)):
            raise ValueError(f"need {self.n_movie_ids} sorted unique movie ids, got {len(ids)}")
        self.movie_lookup.vocab.assign(ids)

    def _tower_inputs(self, inputs: dict[str, Any], side: str) -> Any:
        features = inputs[USER_FEATURES if side == "user" else MOVIE_FEATURES]
        if side == "user":
            return [features, inputs[USER_ID]] if self.id_buckets else features
        return [features, inputs[MOVIE_ID]] if self._movie_takes_ids() else features

    def _movie_takes_ids(self) -> bool:
        return len(self.movie_net.inputs) == 2

    def history_vector(self, inputs: dict[str, Any], training: bool = False) -> Any:
        """(B, embedding) history term, zero for rows with no usable history; None without one."""
        if not self.uses_history or HISTORY_IDS not in inputs:
            return None
        n = self.hparams.history_len
        rows = self.movie_lookup(inputs[HISTORY_IDS][:, :n])
        ratings = ops.cast(inputs[HISTORY_RATINGS][:, :n], "float32")
        mask = ops.cast(rows > 0, "float32")
        if training and self.hparams.history_dropout > 0:
            keep = keras.random.uniform((ops.shape(mask)[0], 1), seed=self.seed_generator) >= self.hparams.history_dropout
            mask = mask * ops.cast(keep, "float32")
        count = ops.sum(mask, axis=1, keepdims=True)
        inv = 1.0 / ops.maximum(count, 1.0)
        centred = (ratings - ops.sum(ratings * mask, axis=1, keepdims=True) * inv) * mask
        if not self.hparams.history_rating_weight:
            centred = centred * 0.0
        emb = self.movie_table(rows)
        pooled = ops.concatenate([
            ops.sum(emb * ops.expand_dims(mask, -1), axis=1) * inv,
            ops.sum(emb * ops.expand_dims(centred, -1), axis=1) * inv,
            ops.log1p(count) / float(np.log1p(n)),
        ], axis=-1)
        return self.history_net(pooled, training=training) * ops.cast(count > 0, "float32")

    def user_vector(self, inputs: dict[str, Any], training: bool = False) -> Any:
        u = self.user_net(self._tower_inputs(inputs, "user"), training=training)
        h = self.history_vector(inputs, training)
        return u if h is None else ops.normalize(u + h, axis=-1, order=2)

    def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
        u = self.user_vector(inputs, training)
        m = self.movie_net(self._tower_inputs(inputs, "movie"), training=training)
        if TRAIN_RATING in inputs and self.hparams.retrieval_weight > 0:
            self.add_loss(self.hparams.retrieval_weight * self._sampled_softmax(u, m, inputs, training))
        return self.offset + self.scale * ops.sum(u * m, axis=-1)

    def _sampled_softmax(self, u: Any, m: Any, inputs: dict[str, Any], training: bool) -> Any:
        """Each positive's movie against the batch's other movies and the uniform negatives.

        Logits are corrected by -log(expected sampling count) (Yi et al. 2019): rows x q(movie)
        for in-batch candidates, K / n_movies for the K uniform ones. Only the batch's first
        `retrieval_rows` rows take part (the cost grows with rows squared).
        """
        c = self.hparams
        r = c.retrieval_rows
        u, m = u[:r], m[:r]
        ids = ops.reshape(ops.cast(inputs[MOVIE_ID][:r], "int32"), (-1,))
        rows = ops.cast(ops.shape(u)[0], "float32")
        logq = ops.reshape(ops.cast(inputs[TRAIN_MOVIE_LOGQ][:r], "float32"), (-1,)) + ops.log(rows)
        cands, cand_ids = m, ids
        if TRAIN_NEG_IDS in inputs:
            neg = self.movie_net(self._neg_inputs(inputs), training=training)
            cands = ops.concatenate([m, neg], axis=0)
            cand_ids = ops.concatenate([ids, ops.cast(inputs[TRAIN_NEG_IDS], "int32")], axis=0)
            logq = ops.concatenate([logq, ops.cast(inputs[TRAIN_NEG_LOGQ], "float32")], axis=0)
        logits = ops.matmul(u, ops.transpose(cands)) / c.temperature
        prob = ops.broadcast_to(ops.exp(ops.minimum(logq, 0.0))[None, :], ops.shape(logits))
        logits = self.logq_correction(logits, prob)
        liked = ops.reshape(ops.cast(inputs[TRAIN_RATING][:r], "float32"), (-1,)) >= c.positive_min_rating
        return masked_softmax_loss(logits, ids, cand_ids, ops.cast(liked, "float32"))

    def _neg_inputs(self, inputs: dict[str, Any]) -> Any:
        feats = inputs[TRAIN_NEG_FEATURES]
        return [feats, inputs[TRAIN_NEG_IDS]] if self._movie_takes_ids() else feats

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_user_features": self.n_user_features,
            "n_movie_features": self.n_movie_features,
            "n_movie_ids": self.n_movie_ids,
            **self.hparams.as_dict(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ColaborativeFiltering:
        return cls(**config)


def compile_model(model: ColaborativeFiltering, learning_rate: float = 1e-3) -> ColaborativeFiltering:
    """Nadam + MSE, with RMSE (in stars) as the reported metric."""
    model.compile(
        optimizer=keras.optimizers.Nadam(learning_rate=learning_rate),
        loss="mse",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
    )
    return model


def build_model(n_user_features: int, n_movie_features: int, learning_rate: float = 1e-3,
                movie_vocab: Any = None, **kwargs: Any) -> ColaborativeFiltering:
    """A compiled, built model (weights exist, so it can be saved or warm-started at once).

    `movie_vocab`: the sorted movie ids that get an ID row (None or empty = no ID embeddings).
    """
    vocab = np.asarray([] if movie_vocab is None else movie_vocab, np.int32)
    model = ColaborativeFiltering(n_user_features, n_movie_features, len(vocab), **kwargs)
    model(example_inputs(n_user_features, n_movie_features, 2, max(model.hparams.history_len, 1)))
    if len(vocab):
        model.set_movie_vocab(vocab)
    return compile_model(model, learning_rate)


def example_inputs(n_user_features: int, n_movie_features: int, n: int, history_len: int = 1) -> dict[str, Any]:
    """Zero inputs of the right shapes and dtypes (to build the model), with an empty history."""
    return {
        USER_FEATURES: np.zeros((n, n_user_features), np.float32),
        MOVIE_FEATURES: np.zeros((n, n_movie_features), np.float32),
        USER_ID: np.zeros((n,), np.int32),
        MOVIE_ID: np.zeros((n,), np.int32),
        **empty(n, history_len).inputs(),
    }


def embed(tower: keras.Model, features: Any, ids: Any = None, batch_size: int = 8192,
          progress: Callable[[int], None] | None = None) -> Any:
    """Run one tower alone, batch by batch: (n, F) scaled features (+ (n,) int ids when it takes
    ids) -> (n, d) float32. The one tower batching loop (training's reports, evaluation, and the
    champion's movie embeddings all call it); `progress` gets each batch's row count."""
    takes_ids = len(tower.inputs) == 2
    if takes_ids and ids is None:
        raise ValueError("this tower needs ids (it was trained with id embeddings)")
    out = []
    for start in range(0, len(features), batch_size):  # direct calls: no per-shape retracing
        f = np.asarray(features[start : start + batch_size], np.float32)
        x = [f, np.asarray(ids[start : start + batch_size], np.int32)] if takes_ids else f
        out.append(ops.convert_to_numpy(tower(x, training=False)))
        if progress:
            progress(len(f))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, tower.outputs[0].shape[-1]), np.float32)


def embed_users(model: ColaborativeFiltering, features: Any, user_ids: Any, histories: Any = None,
                batch_size: int = 4096) -> np.ndarray:
    """User vectors from features and, when given, `history.Histories` rows (one per user)."""
    if histories is None or not model.uses_history:
        return embed(model.user_net, features, user_ids, batch_size)
    out = []
    for s in range(0, len(features), batch_size):
        x = {USER_FEATURES: np.asarray(features[s : s + batch_size], np.float32),
             USER_ID: np.asarray(user_ids[s : s + batch_size], np.int32),
             HISTORY_IDS: histories.movie_ids[s : s + batch_size],
             HISTORY_RATINGS: histories.ratings[s : s + batch_size]}
        out.append(ops.convert_to_numpy(model.user_vector(x, training=False)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, model.embedding), np.float32)


def ranking_bias(model: ColaborativeFiltering, movie_features: Any) -> Any:
    """Per-movie additive ranking score in cosine units: top-N ranks by cosine(user, movie) + bias.

    `movie_features` are the scaled features the movie tower consumed; the rating prediction never
    uses the bias. All zeros when the model has no ranking prior.
    """
    weights = np.asarray(ops.convert_to_numpy(model.rank_weights), np.float32)
    return np.asarray(movie_features, np.float32) @ weights


def rating_map(model: ColaborativeFiltering) -> tuple[float, float]:
    """(scale, offset): rating = offset + scale * cosine."""
    return float(ops.convert_to_numpy(model.scale)), float(ops.convert_to_numpy(model.offset))
