"""The two-tower rating model, written with backend-agnostic `keras.ops` only.

Importing this module imports Keras (and so TensorFlow): never import it from a module that
definitions.py loads at import time.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

USER_FEATURES = "user_features"
MOVIE_FEATURES = "movie_features"
USER_ID = "user_id"
MOVIE_ID = "movie_id"
# Training-only inputs (the pipeline adds them; inference never needs them): the label, to keep
# only liked pairs (>= 4 stars) as retrieval positives, and log q(movie), the movie's share of the
# training ratings, for the sampling-bias (logQ) correction of in-batch negatives.
TRAIN_RATING = "train_rating"
TRAIN_MOVIE_LOGQ = "train_movie_logq"
POSITIVE_MIN_RATING = 4.0
# Knuth's multiplicative constant: spreads consecutive MovieLens ids over the buckets.
_HASH_MULT = 2654435761
_HASH_MOD = 2**31 - 1


@keras.saving.register_keras_serializable(package="movierec")
class IdHashEmbedding(keras.layers.Layer):
    """An integer id hashed into `buckets` rows of a learned table; unseen ids still land in a row."""

    def __init__(self, buckets: int, dim: int, reg: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.buckets, self.dim, self.reg = int(buckets), int(dim), float(reg)
        self.table = keras.layers.Embedding(
            self.buckets,
            self.dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
            embeddings_regularizer=keras.regularizers.L2(self.reg) if self.reg else None,
            name="table",
        )

    def build(self, input_shape: Any) -> None:
        self.table.build((None,))

    def call(self, ids: Any) -> Any:
        ids = ops.reshape(ops.cast(ids, "int64"), (-1,))
        bucket = ops.mod(ops.mod(ids * _HASH_MULT, _HASH_MOD), self.buckets)
        return self.table(bucket)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0], self.dim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "buckets": self.buckets, "dim": self.dim, "reg": self.reg}


def build_tower(
    name: str, n_features: int, layers: list[int], embedding: int, reg: float, id_buckets: int, id_dim: int
) -> keras.Model:
    """A Dense stack ending in an L2-normalised `embedding`-d vector.

    Inputs are the scaled float32 feature matrix, plus the raw int id when `id_buckets` > 0.
    """
    regularizer = keras.regularizers.L2(reg) if reg else None
    features = keras.Input((n_features,), dtype="float32", name=f"{name}_features")
    inputs: list[Any] = [features]
    x = features
    if id_buckets:
        ids = keras.Input((), dtype="int32", name=f"{name}_id")
        inputs.append(ids)
        id_vec = IdHashEmbedding(id_buckets, id_dim, reg, name=f"{name}_id_embedding")(ids)
        x = keras.layers.Concatenate(name=f"{name}_concat")([features, id_vec])
    for i, units in enumerate(layers):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"{name}_dense_{i}")(x)
    x = keras.layers.Dense(embedding, kernel_regularizer=regularizer, name=f"{name}_out")(x)
    out = keras.layers.UnitNormalization(axis=-1, name=f"{name}_l2")(x)
    return keras.Model(inputs if id_buckets else features, out, name=f"{name}_net")



@keras.saving.register_keras_serializable(package="movierec")
class ColaborativeFiltering(keras.Model):
    """Two-tower rating model: rating = scale * cosine(user, movie) + offset.

    The class name keeps the original design's spelling ("Colaborative", one "l") so that the
    original code's references and saved configs keep working.

    Input: a dict with `user_features` (B, n_user_features) float32, `movie_features`
    (B, n_movie_features) float32, and `user_id`/`movie_id` (B,) int32 (used only when
    `id_buckets` > 0). `user_net` and `movie_net` run alone for inference: each takes its feature
    matrix (and ids when `id_buckets` > 0) and returns L2-normalised `embedding`-d vectors.

    `scale`/`offset` are learned scalars initialised at 2.25/2.75, which maps cosine -1..1 exactly
    onto the 0.5..5 star scale. Learning them lets the model shrink its spread when cosines are
    noisy (a fixed map forces |cos| near 1 for confident 0.5- or 5-star predictions).

    `retrieval_weight` > 0 adds an in-batch sampled-softmax loss during training (liked pairs are
    positives, the batch's other movies negatives, with logQ correction and repeats of the same
    movie masked), via `add_loss` so that it stays backend-agnostic.
    """

    def __init__(
        self,
        n_user_features: int,
        n_movie_features: int,
        user_layers: list[int] | None = None,
        movie_layers: list[int] | None = None,
        embedding: int = 64,
        user_reg: float = 0.0,
        movie_reg: float = 0.0,
        id_buckets: int = 0,
        id_dim: int = 16,
        retrieval_weight: float = 0.0,
        temperature: float = 0.1,
        retrieval_rows: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_user_features, self.n_movie_features = int(n_user_features), int(n_movie_features)
        self.user_layers = list(user_layers if user_layers is not None else [256, 128])
        self.movie_layers = list(movie_layers if movie_layers is not None else [256, 128])
        self.embedding, self.user_reg, self.movie_reg = int(embedding), float(user_reg), float(movie_reg)
        self.id_buckets, self.id_dim = int(id_buckets), int(id_dim)
        self.retrieval_weight, self.temperature = float(retrieval_weight), float(temperature)
        self.retrieval_rows = int(retrieval_rows)
        self.user_net = build_tower(
            "user", self.n_user_features, self.user_layers, self.embedding, self.user_reg, self.id_buckets, self.id_dim
        )
        self.movie_net = build_tower(
            "movie", self.n_movie_features, self.movie_layers, self.embedding, self.movie_reg,
            self.id_buckets, self.id_dim,
        )
        # The ranking prior: top-N ranks by cosine + movie_features @ rank_weights. Not trained by
        # gradient: fitted on the validation split after training (ml/ranking.py); zeros = none.
        self.rank_weights = self.add_weight(
            shape=(self.n_movie_features,), initializer="zeros", trainable=False, name="rank_weights"
        )
        self.scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.25), name="scale")
        self.offset = self.add_weight(shape=(), initializer=keras.initializers.Constant(2.75), name="offset")

    def _tower_inputs(self, inputs: dict[str, Any], side: str) -> Any:
        features = inputs[USER_FEATURES if side == "user" else MOVIE_FEATURES]
        if not self.id_buckets:
            return features
        return [features, inputs[USER_ID if side == "user" else MOVIE_ID]]

    def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
        u = self.user_net(self._tower_inputs(inputs, "user"), training=training)
        m = self.movie_net(self._tower_inputs(inputs, "movie"), training=training)
        if training and self.retrieval_weight > 0:
            self.add_loss(self.retrieval_weight * self._in_batch_softmax(u, m, inputs))
        cosine = ops.sum(u * m, axis=-1)
        return self.offset + self.scale * cosine

    def _in_batch_softmax(self, u: Any, m: Any, inputs: dict[str, Any]) -> Any:
        """Each liked pair's movie against the batch's other movies (sampled softmax).

        With `train_movie_logq`, logits are corrected by -log q(movie) (Yi et al. 2019), so the
        popularity-skewed in-batch negatives do not push popular movies down. Only the batch's
        first `retrieval_rows` rows take part: the cost grows with rows squared, and big batches
        (8192+) are what make 20M-rating epochs fast.
        """
        rows = self.retrieval_rows
        u, m = u[:rows], m[:rows]
        inputs = {k: v[:rows] for k, v in inputs.items()
                  if k in (TRAIN_MOVIE_LOGQ, MOVIE_ID, TRAIN_RATING)}
        logits = ops.matmul(u, ops.transpose(m)) / self.temperature
        logq = inputs.get(TRAIN_MOVIE_LOGQ)
        if logq is not None:
            logits = logits - ops.expand_dims(ops.reshape(ops.cast(logq, logits.dtype), (-1,)), 0)
        n = ops.shape(logits)[0]
        eye = ops.eye(n, dtype="bool")
        movie_ids = inputs.get(MOVIE_ID)
        if movie_ids is not None:
            ids = ops.reshape(movie_ids, (-1,))
            same = ops.equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0))
            # Another row of the same movie is not a negative: drop it from the denominator.
            logits = ops.where(ops.logical_and(same, ops.logical_not(eye)), -1e9, logits)
        per_row = keras.losses.categorical_crossentropy(ops.cast(eye, logits.dtype), logits, from_logits=True)
        rating = inputs.get(TRAIN_RATING)
        if rating is None:
            return ops.mean(per_row)
        liked = ops.cast(ops.reshape(rating, (-1,)) >= POSITIVE_MIN_RATING, per_row.dtype)
        return ops.sum(per_row * liked) / ops.maximum(ops.sum(liked), 1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_user_features": self.n_user_features,
            "n_movie_features": self.n_movie_features,
            "user_layers": self.user_layers,
            "movie_layers": self.movie_layers,
            "embedding": self.embedding,
            "user_reg": self.user_reg,
            "movie_reg": self.movie_reg,
            "id_buckets": self.id_buckets,
            "id_dim": self.id_dim,
            "retrieval_weight": self.retrieval_weight,
            "temperature": self.temperature,
            "retrieval_rows": self.retrieval_rows,
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


def build_model(n_user_features: int, n_movie_features: int, learning_rate: float = 1e-3, **kwargs: Any
                ) -> ColaborativeFiltering:
    """A compiled, built model (weights exist, so it can be saved or warm-started at once)."""
    model = ColaborativeFiltering(n_user_features, n_movie_features, **kwargs)
    model(example_inputs(n_user_features, n_movie_features, 2))
    return compile_model(model, learning_rate)


def example_inputs(n_user_features: int, n_movie_features: int, n: int) -> dict[str, Any]:
    """Zero inputs of the right shapes and dtypes (to build the model)."""
    import numpy as np

    return {
        USER_FEATURES: np.zeros((n, n_user_features), np.float32),
        MOVIE_FEATURES: np.zeros((n, n_movie_features), np.float32),
        USER_ID: np.zeros((n,), np.int32),
        MOVIE_ID: np.zeros((n,), np.int32),
    }


def embed(tower: keras.Model, features: Any, ids: Any, batch_size: int = 8192) -> Any:
    """Run one tower alone: (n, F) scaled features (+ (n,) int ids when it hashes ids) -> (n, d)."""
    import numpy as np

    out = []
    for start in range(0, len(features), batch_size):  # direct calls: no per-shape retracing
        f = np.asarray(features[start : start + batch_size], np.float32)
        x = [f, np.asarray(ids[start : start + batch_size], np.int32)] if len(tower.inputs) == 2 else f
        out.append(ops.convert_to_numpy(tower(x, training=False)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, tower.outputs[0].shape[-1]), np.float32)


def ranking_bias(model: ColaborativeFiltering, movie_features: Any) -> Any:
    """Per-movie additive ranking score in cosine units: top-N ranks by cosine(user, movie) + bias.

    `movie_features` are the scaled features the movie tower consumed; the rating prediction never
    uses the bias. All zeros when the model has no ranking prior.
    """
    import numpy as np

    weights = np.asarray(ops.convert_to_numpy(model.rank_weights), np.float32)
    return np.asarray(movie_features, np.float32) @ weights


def rating_map(model: ColaborativeFiltering) -> tuple[float, float]:
    """(scale, offset): rating = offset + scale * cosine."""
    return float(ops.convert_to_numpy(model.scale)), float(ops.convert_to_numpy(model.offset))
