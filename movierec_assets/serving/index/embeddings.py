"""Movie embeddings: store them (PostgreSQL + .npy) and load them (offline/batch.py computes them).

A set of embeddings belongs to one model version, with the model's per-movie ranking prior. It is written in one transaction (rows in
`ml.movie_embeddings` plus its manifest row in `ml.embedding_sets`), so a version is either
completely servable or absent; re-running a version replaces it. The `.npy` pair next to the model
is a fast-load copy, written to a temp directory and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from movierec_assets.db import bulk
from movierec_assets.db.connect import adbc_connect, connect

EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "movie_ids.npy"
BIAS_FILE = "rank_bias.npy"


class EmbeddingsUnavailable(RuntimeError):
    """No complete embedding set exists for the requested model version."""


@dataclass(frozen=True)
class EmbeddingStore:
    """Movie ids sorted ascending, their float32 embeddings (row i belongs to movie_ids[i]) and the
    model's per-movie ranking prior `bias` (user top-N ranks by embedding . user + bias)."""

    version: str
    movie_ids: np.ndarray
    matrix: np.ndarray
    created_at: datetime
    bias: np.ndarray = None  # type: ignore[assignment]  # None -> zeros (no prior)

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.movie_ids.shape[0]:
            raise ValueError(f"embeddings {self.matrix.shape} do not match {self.movie_ids.shape[0]} movie ids")
        bias = np.zeros(len(self.movie_ids), np.float32) if self.bias is None else np.asarray(self.bias, np.float32)
        if bias.shape != self.movie_ids.shape:
            raise ValueError(f"ranking bias {bias.shape} does not match {self.movie_ids.shape[0]} movie ids")
        object.__setattr__(self, "bias", np.ascontiguousarray(bias))
        bad = ~(np.isfinite(self.matrix).all(axis=1) & np.isfinite(bias))
        if bad.any():  # a diverged model: refuse it rather than serve scores that rank nothing
            raise ValueError(f"model {self.version}: {int(bad.sum())} movies have non-finite embeddings or "
                             f"ranking bias (first: movie {int(self.movie_ids[bad][0])})")
        if len(self.movie_ids) > 1 and not np.all(np.diff(self.movie_ids) > 0):
            raise ValueError("movie ids must be unique and sorted ascending")

    @classmethod
    def build(cls, version: str, movie_ids: np.ndarray, matrix: np.ndarray,
              created_at: datetime | None = None, bias: np.ndarray | None = None) -> EmbeddingStore:
        """Sorts by movie id and makes the matrix C-contiguous float32."""
        ids = np.asarray(movie_ids, dtype=np.int64)
        if bias is not None and np.shape(bias) != ids.shape:
            raise ValueError(f"ranking bias {np.shape(bias)} does not match {ids.shape[0]} movie ids")
        order = np.argsort(ids, kind="stable")
        return cls(
            version,
            ids[order].astype(np.int32),
            np.ascontiguousarray(np.asarray(matrix, dtype=np.float32)[order]),
            created_at or datetime.now(UTC),
            None if bias is None else np.asarray(bias, np.float32)[order],
        )

    @property
    def ranking_bias(self) -> np.ndarray | None:
        """The bias to add to user scores, or None when the model has no ranking prior (all zero)."""
        return self.bias if self.bias.any() else None

    @property
    def dims(self) -> int:
        return int(self.matrix.shape[1])

    def rows_of(self, movie_ids: np.ndarray) -> np.ndarray:
        """Row numbers of the given movie ids; -1 for ids not in the store."""
        ids = np.asarray(movie_ids, dtype=np.int64)
        pos = np.searchsorted(self.movie_ids, ids)
        pos = np.minimum(pos, len(self.movie_ids) - 1) if len(self.movie_ids) else pos
        found = len(self.movie_ids) > 0 and (self.movie_ids[pos] == ids)
        return np.where(found, pos, -1)


# -- PostgreSQL -----------------------------------------------------------------------------------
def _arrow_rows(store: EmbeddingStore) -> pa.Table:
    m, d = store.matrix.shape
    offsets = pa.array(np.arange(0, m * d + 1, d, dtype=np.int32))
    return pa.table({
        "model_version": pa.repeat(pa.scalar(store.version, pa.string()), m),
        "movie_id": pa.array(store.movie_ids, pa.int32()),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(store.matrix.reshape(-1), pa.float32())),
        "rank_bias": pa.array(store.bias, pa.float32()),
    })


def write_db(url: str, store: EmbeddingStore, npy_dir: Path | None, seconds: float | None) -> int:
    """Replace this version's rows and manifest in one transaction (COPY BINARY); return rows."""
    with adbc_connect(url) as conn:
        bulk.execute(conn, "DELETE FROM ml.movie_embeddings WHERE model_version = $1", [store.version])
        rows = bulk.ingest(conn, "ml", "movie_embeddings", _arrow_rows(store))
        bulk.execute(conn, "DELETE FROM ml.embedding_sets WHERE model_version = $1", [store.version])
        bulk.execute(
            conn,
            "INSERT INTO ml.embedding_sets (model_version, movie_count, dims, npy_dir, seconds, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [store.version, rows, store.dims, str(npy_dir) if npy_dir else None, seconds, store.created_at],
        )
        conn.commit()
    return rows


def read_db(url: str, version: str) -> EmbeddingStore:
    """A complete embedding set from PostgreSQL (the fallback when the .npy copy is missing)."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT movie_count, dims, created_at FROM ml.embedding_sets WHERE model_version = %s", (version,)
        ).fetchone()
    if row is None:
        raise EmbeddingsUnavailable(f"no embeddings for model version {version!r}")
    count, dims, created_at = row
    with adbc_connect(url, autocommit=True) as conn:
        table = bulk.fetch_arrow(
            conn, "SELECT movie_id, embedding, rank_bias FROM ml.movie_embeddings WHERE model_version = $1"
            " ORDER BY movie_id", [version],
        )
    values = table.column("embedding").combine_chunks().flatten().to_numpy()
    if table.num_rows != count or values.size != count * dims:
        raise EmbeddingsUnavailable(f"embeddings for {version!r}: {table.num_rows} rows, manifest says {count}")
    ids = table.column("movie_id").to_numpy()
    bias = table.column("rank_bias").to_numpy()
    return EmbeddingStore.build(version, ids, values.reshape(count, dims), created_at, bias)


# -- .npy files -----------------------------------------------------------------------------------
def npy_dir_for(model_path: str | Path) -> Path:
    """Where a version's .npy copy lives: `embeddings/` in the model's version folder."""
    path = Path(model_path).absolute()
    return (path if path.is_dir() else path.parent) / "embeddings"


def write_npy(directory: Path, store: EmbeddingStore) -> Path:
    """Write ids + matrix to a temp folder, then rename it into place (replacing an older copy)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    np.save(tmp / IDS_FILE, store.movie_ids)
    np.save(tmp / EMBEDDINGS_FILE, store.matrix)
    np.save(tmp / BIAS_FILE, store.bias)
    os.chmod(tmp, 0o755)
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def read_npy(directory: Path, version: str, count: int, dims: int, created_at: datetime) -> EmbeddingStore:
    """The .npy copy, checked against the manifest's shape (a stale or partial copy raises)."""
    ids = np.load(directory / IDS_FILE, allow_pickle=False)
    matrix = np.load(directory / EMBEDDINGS_FILE, allow_pickle=False)
    bias = np.load(directory / BIAS_FILE, allow_pickle=False)
    if ids.shape != (count,) or matrix.shape != (count, dims) or bias.shape != (count,):
        raise EmbeddingsUnavailable(f"{directory}: shape {matrix.shape} does not match manifest ({count}, {dims})")
    return EmbeddingStore(version, ids.astype(np.int32), np.ascontiguousarray(matrix, np.float32), created_at, bias)


def load(url: str, version: str) -> EmbeddingStore:
    """A version's embeddings: the .npy copy when it is intact, else PostgreSQL."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT movie_count, dims, npy_dir, created_at FROM ml.embedding_sets WHERE model_version = %s",
            (version,),
        ).fetchone()
    if row is None:
        raise EmbeddingsUnavailable(f"no embeddings for model version {version!r}")
    count, dims, npy_dir, created_at = row
    if npy_dir:
        try:
            return read_npy(Path(npy_dir), version, count, dims, created_at)
        except (OSError, ValueError, EmbeddingsUnavailable):
            pass  # missing or stale copy: PostgreSQL is the source of truth
    return read_db(url, version)
