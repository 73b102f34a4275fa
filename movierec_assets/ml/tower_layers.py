"""Layers and tower builders of the two-tower model (`keras.ops` only, backend-agnostic).

Importing this module imports Keras (and so TensorFlow): never import it from a module that
definitions.py loads at import time.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Knuth's multiplicative constant: spreads consecutive MovieLens ids over the buckets.
_HASH_MULT = 2654435761
_HASH_MOD = 2**31 - 1
MASKED_LOGIT = -1e9


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


@keras.saving.register_keras_serializable(package="movierec")
class MovieIdLookup(keras.layers.Layer):
    """Raw movie id -> its row in the ID table: 1..size for the vocabulary's movies (the movies with
    enough training ratings, sorted ascending), 0 for every other id (rare, new, unknown, padding).

    The vocabulary is a non-trainable int32 weight, so it is saved with the model's weights and the
    config holds only its size (safe_mode loading needs no custom objects beyond this class).
    """

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = int(size)

    def build(self, input_shape: Any) -> None:
        # Filled by ColaborativeFiltering.set_movie_vocab; -2 never matches an id or PAD_ID (-1).
        self.vocab = self.add_weight(shape=(self.size,), dtype="int32", trainable=False, name="vocab",
                                     initializer=keras.initializers.Constant(-2))

    def call(self, ids: Any) -> Any:
        ids = ops.cast(ids, "int32")
        flat = ops.reshape(ids, (-1,))
        pos = ops.minimum(ops.cast(ops.searchsorted(self.vocab, flat), "int32"), self.size - 1)
        found = ops.equal(ops.take(self.vocab, pos), flat)
        return ops.reshape(ops.where(found, pos + 1, 0), ops.shape(ids))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


def id_table(size: int, dim: int, reg: float) -> keras.layers.Embedding:
    """The movie-ID table: row 0 is the shared "rare movie" row."""
    return keras.layers.Embedding(
        size + 1, dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
        embeddings_regularizer=keras.regularizers.L2(reg) if reg else None, name="movie_id_table")


def dense_stack(x: Any, name: str, layers: list[int], out: int, reg: float) -> Any:
    regularizer = keras.regularizers.L2(reg) if reg else None
    for i, units in enumerate(layers):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"{name}_dense_{i}")(x)
    return keras.layers.Dense(out, kernel_regularizer=regularizer, name=f"{name}_out")(x)


def build_tower(
    name: str, n_features: int, layers: list[int], embedding: int, reg: float, id_buckets: int, id_dim: int,
    id_layers: tuple[MovieIdLookup, keras.layers.Embedding] | None = None,
) -> keras.Model:
    """A Dense stack ending in an L2-normalised `embedding`-d vector.

    Inputs are the scaled float32 feature matrix, plus the raw int id when the tower hashes ids
    (`id_buckets` > 0) or looks them up in a shared vocabulary table (`id_layers`).
    """
    features = keras.Input((n_features,), dtype="float32", name=f"{name}_features")
    inputs: list[Any] = [features]
    x = features
    if id_buckets or id_layers:
        ids = keras.Input((), dtype="int32", name=f"{name}_id")
        inputs.append(ids)
        if id_layers:
            lookup, table = id_layers
            id_vec = table(lookup(ids))
        else:
            id_vec = IdHashEmbedding(id_buckets, id_dim, reg, name=f"{name}_id_embedding")(ids)
        x = keras.layers.Concatenate(name=f"{name}_concat")([features, id_vec])
    x = dense_stack(x, name, layers, embedding, reg)
    out = keras.layers.UnitNormalization(axis=-1, name=f"{name}_l2")(x)
    return keras.Model(inputs if len(inputs) > 1 else features, out, name=f"{name}_net")


def build_history_net(id_dim: int, layers: list[int], embedding: int, reg: float) -> keras.Model:
    """Pooled history (mean and rating-centred mean of ID embeddings, log count) -> a vector added
    to the user's feature embedding before the final L2 normalisation."""
    pooled = keras.Input((2 * id_dim + 1,), dtype="float32", name="history_pooled")
    return keras.Model(pooled, dense_stack(pooled, "history", layers, embedding, reg), name="history_net")


def masked_softmax_loss(logits: Any, positive_ids: Any, candidate_ids: Any, weights: Any) -> Any:
    """Softmax cross-entropy where row i's positive is candidate i; candidates that are the same
    movie as row i's positive (accidental hits) leave the denominator.

    Not keras_rs.layers.RemoveAccidentalHits: in keras-rs 0.4.0 it adds smallest_normal/100
    (about 1e-40) to the hits' logits, a no-op (keras-team/keras-rs PR #206).
    """
    rows = ops.shape(logits)[0]
    labels = ops.eye(rows, ops.shape(logits)[1], dtype=logits.dtype)
    hit = ops.equal(ops.expand_dims(positive_ids, 1), ops.expand_dims(candidate_ids, 0))
    logits = ops.where(ops.logical_and(hit, labels < 0.5), MASKED_LOGIT, logits)
    per_row = keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
    return ops.sum(per_row * weights) / ops.maximum(ops.sum(weights), 1.0)
