"""User encoders: scaled features (+ id) in, one embedding out.

`NumpyTower` replays a trained Keras tower's forward pass in numpy (hash-bucket id embedding,
Dense + ReLU/linear stack, L2 normalisation): for one row per request this costs tens of
microseconds, where an eager Keras call costs milliseconds. `KerasEncoder` calls the tower itself
and is the fallback for layer types the numpy replay does not know.

A user's embedding must not depend on who shares the batch (a GEMM's bits depend on its shape:
OpenBLAS' Haswell kernels give a row other bits in a batch of 3 than of 8), so every row goes
through the same (1, F) x (F, H) product: the server, the CLI and the batch table all call
`encode_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from movierec_assets.serving.index.topn import tree_sum

# Must match movierec_assets.ml.two_tower.IdHashEmbedding (checked by a test against the layer).
_HASH_MULT = 2654435761
_HASH_MOD = 2**31 - 1
_EPSILON = 1e-12
_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0, out=x), "linear": lambda x: x}


class UnsupportedTower(ValueError):
    """The tower has a layer the numpy replay cannot reproduce."""


class UserEncoder(Protocol):
    """Scaled user features (1, F) float32 and the user id -> (d,) float32 embedding."""

    def encode(self, features: np.ndarray, user_id: int) -> np.ndarray: ...


def l2_normalize(x: np.ndarray, epsilon: float = _EPSILON) -> np.ndarray:
    """Keras' UnitNormalization (epsilon 1e-12) and `ops.normalize` (epsilon 1e-7):
    x * min(rsqrt(sum x^2), 1/epsilon)."""
    sq = tree_sum(np.square(x).reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], 1)  # per row, batch-proof
    with np.errstate(divide="ignore"):
        inv = np.minimum(1.0 / np.sqrt(sq), np.float32(1.0 / epsilon))
    return (x * inv).astype(np.float32)


def hash_buckets(ids: np.ndarray, buckets: int) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    return np.mod(np.mod(ids * _HASH_MULT, _HASH_MOD), buckets)


@dataclass(frozen=True)
class NumpyTower:
    layers: tuple[tuple[np.ndarray, np.ndarray, str], ...]  # (kernel, bias, activation)
    id_table: np.ndarray | None = None  # (buckets, id_dim) when the tower hashes ids
    normalize: bool = True

    @classmethod
    def from_keras(cls, tower: Any) -> NumpyTower:
        dense: list[tuple[np.ndarray, np.ndarray, str]] = []
        id_table, normalize = None, False
        for layer in tower.layers:
            kind = type(layer).__name__
            if kind in ("InputLayer", "Concatenate"):
                continue
            if kind == "IdHashEmbedding":
                id_table = np.asarray(layer.table.embeddings, dtype=np.float32)
            elif kind == "Dense":
                activation = layer.get_config()["activation"]
                if activation not in _ACTIVATIONS or not layer.use_bias:
                    raise UnsupportedTower(f"Dense layer {layer.name} with activation {activation!r}")
                dense.append((np.asarray(layer.kernel, np.float32), np.asarray(layer.bias, np.float32), activation))
            elif kind == "UnitNormalization":
                normalize = True
            else:
                raise UnsupportedTower(f"layer {layer.name} of type {kind}")
        if len(tower.inputs) != (2 if id_table is not None else 1):
            raise UnsupportedTower(f"tower has {len(tower.inputs)} inputs")
        return cls(tuple(dense), id_table, normalize)

    def forward(self, features: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if self.id_table is not None:
            if ids is None:
                raise ValueError("this tower needs ids")
            x = np.concatenate([x, self.id_table[hash_buckets(ids, self.id_table.shape[0])]], axis=1)
        x = x[:, None, :]  # (B, 1, F): matmul makes one same-shaped vector-matrix product per row
        for kernel, bias, activation in self.layers:
            x = _ACTIVATIONS[activation](x @ kernel + bias)
        x = x[:, 0, :]
        return l2_normalize(x) if self.normalize else x

    def encode(self, features: np.ndarray, user_id: int) -> np.ndarray:
        return self.forward(features, np.array([user_id]))[0]


@dataclass(frozen=True)
class KerasEncoder:
    """Calls the Keras tower (slower; for towers NumpyTower cannot replay)."""

    tower: Any

    def encode(self, features: np.ndarray, user_id: int) -> np.ndarray:
        x: Any = np.asarray(features, dtype=np.float32)
        if len(self.tower.inputs) > 1:
            x = [x, np.array([user_id], dtype=np.int32)]
        return np.asarray(self.tower(x, training=False), dtype=np.float32)[0]


def encode_rows(encoder: Any, x: np.ndarray, user_ids: np.ndarray, block: int = 4096,
                history: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(B, d) float32 user embeddings, each row's bits independent of the others: `forward` in
    blocks when the encoder has one (its products are per row), else `encode` row by row.

    `history`: (movie ids (B, N) int32, -1 padded; stars (B, N) float32) for encoders with a
    `history_len` (serving/online/history_tower.py); None is an empty history."""
    forward = getattr(encoder, "forward", None)
    if forward is None:
        return np.stack([encoder.encode(x[i : i + 1], int(u)) for i, u in enumerate(user_ids)])
    if getattr(encoder, "history_len", 0):
        parts = [forward(x[i : i + block], user_ids[i : i + block],
                         None if history is None else (history[0][i : i + block], history[1][i : i + block]))
                 for i in range(0, len(x), block)]
    else:
        parts = [forward(x[i : i + block], user_ids[i : i + block]) for i in range(0, len(x), block)]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 0), np.float32)


def encoder_for(tower: Any) -> UserEncoder:
    """The fastest exact encoder for a Keras tower."""
    try:
        return NumpyTower.from_keras(tower)
    except UnsupportedTower:
        return KerasEncoder(tower)
