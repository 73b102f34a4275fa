"""The history/future split of a ratings dataset, and its small manifest.

Exact rule (later issues and checks rely on it): order the ratings by (timestamp, userId, movieId),
let H = floor(f * N) (or H given); `cutoff_day` is the UTC date of the H-th rating. History is every
rating whose UTC date is on or before `cutoff_day`; the future is one partition per UTC day from
`cutoff_day + 1` to the day of the last rating.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from movierec_assets.config import paths
from movierec_assets.movielens.source import dataset_files, scan_ratings

DEFAULT_FRACTION = 0.625
MANIFEST_FILE = "split_manifest.json"
_EDGE_BYTES = 1 << 20  # bytes hashed at each end of ratings.csv for the dataset identity


@dataclass(frozen=True)
class SplitManifest:
    dataset_id: str
    source_dir: str
    n_ratings: int
    n_history: int  # rows with UTC date <= cutoff_day (>= the requested H)
    history_fraction: float | None
    cutoff_day: date
    last_day: date
    history_count: int | None = field(default=None)  # the requested H when given as a count

    @property
    def n_future(self) -> int:
        return self.n_ratings - self.n_history

    def future_days(self) -> list[date]:
        """The daily partitions, cutoff_day + 1 .. last_day (empty when there is no future)."""
        n = (self.last_day - self.cutoff_day).days
        return [self.cutoff_day + timedelta(days=i) for i in range(1, n + 1)]

    def partition_keys(self) -> list[str]:
        return [d.isoformat() for d in self.future_days()]

    def matches(self, dataset_id: str, fraction: float | None, history_count: int | None) -> bool:
        if self.dataset_id != dataset_id:
            return False
        if history_count is not None:
            return self.history_count == history_count
        return self.history_count is None and self.history_fraction == fraction

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["cutoff_day"] = self.cutoff_day.isoformat()
        data["last_day"] = self.last_day.isoformat()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SplitManifest:
        data = json.loads(text)
        return cls(
            dataset_id=str(data["dataset_id"]),
            source_dir=str(data["source_dir"]),
            n_ratings=int(data["n_ratings"]),
            n_history=int(data["n_history"]),
            history_fraction=None
            if data.get("history_fraction") is None
            else float(data["history_fraction"]),
            cutoff_day=date.fromisoformat(data["cutoff_day"]),
            last_day=date.fromisoformat(data["last_day"]),
            history_count=None if data.get("history_count") is None else int(data["history_count"]),
        )


def day_of(rated_at: str | pl.Expr = "rated_at") -> pl.Expr:
    """The UTC calendar day of a timestamp column (tz-aware columns are converted to UTC first)."""
    expr = pl.col(rated_at) if isinstance(rated_at, str) else rated_at
    return expr.dt.convert_time_zone("UTC").dt.date()


def history_frame(ratings: pl.LazyFrame, manifest: SplitManifest) -> pl.LazyFrame:
    """The history: ratings whose UTC day is on or before the cutoff day."""
    return ratings.filter(day_of("rated_at") <= manifest.cutoff_day)


def future_frame(ratings: pl.LazyFrame, manifest: SplitManifest, day: date | None = None) -> pl.LazyFrame:
    """The future ratings (after the cutoff day), or only those of one partition `day`."""
    if day is not None:
        if not manifest.cutoff_day < day <= manifest.last_day:
            raise ValueError(
                f"{day} is not a future partition ({manifest.cutoff_day} < day <= {manifest.last_day})"
            )
        return ratings.filter(day_of("rated_at") == day)
    return ratings.filter(day_of("rated_at") > manifest.cutoff_day)


def _history_target(n: int, fraction: float, history_count: int | None) -> int:
    if history_count is not None:
        if not 1 <= history_count <= n:
            raise ValueError(f"history_count must be between 1 and N={n}, got {history_count}")
        return history_count
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"history fraction must be in (0, 1], got {fraction}")
    h = math.floor(fraction * n)
    if h < 1:
        raise ValueError(f"history fraction {fraction} of N={n} ratings selects no rating")
    return h


def compute_split(
    ratings: pl.LazyFrame,
    fraction: float = DEFAULT_FRACTION,
    history_count: int | None = None,
    dataset_id: str = "",
    source_dir: str = "",
) -> SplitManifest:
    """Apply the split rule. Only day counts are needed: the H-th rating in (timestamp, user, movie)
    order falls on the first day whose cumulative count reaches H, whatever the tie order."""
    per_day = (
        ratings.group_by(day_of("rated_at").alias("day"))
        .agg(pl.len().alias("n"))
        .sort("day")
        .with_columns(pl.col("n").cum_sum().alias("cum"))
        .collect()
    )
    n = int(per_day["n"].sum()) if per_day.height else 0
    if n == 0:
        raise ValueError(f"cannot split {source_dir or 'the ratings'}: there are no ratings")
    h = _history_target(n, fraction, history_count)
    cutoff = per_day.filter(pl.col("cum") >= h).row(0, named=True)
    return SplitManifest(
        dataset_id=dataset_id,
        source_dir=source_dir,
        n_ratings=n,
        n_history=int(cutoff["cum"]),
        history_fraction=None if history_count is not None else float(fraction),
        cutoff_day=cutoff["day"],
        last_day=per_day["day"][-1],
        history_count=history_count,
    )


def dataset_identity(directory: str | Path) -> str:
    """A cheap, stable id: directory name, file sizes and a hash of both ends of ratings.csv."""
    files = dataset_files(directory)
    digest = hashlib.sha256()
    for path in (files.ratings, files.movies):
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
    size = files.ratings.stat().st_size
    with open(files.ratings, "rb") as fh:
        digest.update(fh.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            fh.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            digest.update(fh.read())
    return f"{files.root.resolve().name}-{digest.hexdigest()[:16]}"


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(path: str | Path, manifest: SplitManifest) -> None:
    _atomic_write_text(Path(path), manifest.to_json() + "\n")


def read_manifest(path: str | Path) -> SplitManifest:
    path = Path(path)
    try:
        return SplitManifest.from_json(path.read_text(encoding="utf-8"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid split manifest ({exc})") from None


def active_manifest_path() -> Path:
    return paths().home / MANIFEST_FILE


def read_active_manifest() -> SplitManifest | None:
    """The manifest of the dataset in use (`$MOVIEREC_HOME/split_manifest.json`), or None."""
    path = active_manifest_path()
    return read_manifest(path) if path.is_file() else None


def activate(manifest: SplitManifest) -> Path:
    """Make `manifest` the active one (atomic temp-file + rename)."""
    path = active_manifest_path()
    write_manifest(path, manifest)
    return path


def _cache_path(dataset_id: str, fraction: float, history_count: int | None) -> Path:
    key = f"h{history_count}" if history_count is not None else f"f{fraction!r}"
    return paths().home / "manifests" / f"{dataset_id}.{key}.json"


def store_manifest(url: str, manifest: SplitManifest) -> None:
    """Upsert the manifest into `movielens.split_manifest`."""
    from movierec_assets.db.connect import connect

    sql = """
        INSERT INTO movielens.split_manifest
            (dataset_id, source_dir, n_ratings, n_history, history_fraction, cutoff_day, last_day, created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (dataset_id) DO UPDATE SET
            source_dir = EXCLUDED.source_dir, n_ratings = EXCLUDED.n_ratings,
            n_history = EXCLUDED.n_history, history_fraction = EXCLUDED.history_fraction,
            cutoff_day = EXCLUDED.cutoff_day, last_day = EXCLUDED.last_day, created_at = now()
    """
    params = (
        manifest.dataset_id, manifest.source_dir, manifest.n_ratings, manifest.n_history,
        manifest.history_fraction, manifest.cutoff_day, manifest.last_day,
    )  # fmt: skip
    with connect(url) as conn:
        conn.execute(sql, params)


def prepare_dataset(
    data_dir: str | Path | None = None,
    fraction: float = DEFAULT_FRACTION,
    history_count: int | None = None,
) -> SplitManifest:
    """Split `data_dir` (default: the configured dataset, generating the synthetic default if needed)
    and make it active. Cheap when the active or a cached manifest already matches."""
    from movierec_assets.config import configured_data_dir

    if data_dir is None:
        data_dir = configured_data_dir()
        if Path(data_dir) == paths().default_dataset:
            from movierec_assets.movielens.synth import ensure_default_dataset

            ensure_default_dataset()
    root = Path(data_dir).absolute()
    identity = dataset_identity(root)
    active = read_active_manifest()
    if active and active.matches(identity, fraction, history_count) and active.source_dir == str(root):
        return active
    cache = _cache_path(identity, fraction, history_count)
    manifest = read_manifest(cache) if cache.is_file() else None
    if manifest is None or manifest.source_dir != str(root):
        manifest = compute_split(scan_ratings(root), fraction, history_count, identity, str(root))
        write_manifest(cache, manifest)
    activate(manifest)
    return manifest
