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
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from movierec_assets.movielens.source import RATINGS_COLUMNS, dataset_files, epoch_to_utc, scan_ratings

DEFAULT_FRACTION = 0.625
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

    def future_days(self) -> list[date]:
        """The daily partitions, cutoff_day + 1 .. last_day (empty when there is no future)."""
        n = (self.last_day - self.cutoff_day).days
        return [self.cutoff_day + timedelta(days=i) for i in range(1, n + 1)]

    def partition_keys(self) -> list[str]:
        return [d.isoformat() for d in self.future_days()]

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


# The split of the synthetic default dataset (`movierec data synth` with the default size and seed),
# which the CLI generates on first use: the definitions use it before that dataset exists, so a
# fresh home already shows the partitions it will have. A test regenerates the dataset and checks it.
SYNTHETIC_DEFAULT = SplitManifest(
    dataset_id="synthetic-default-25957f43d82d9b1e", source_dir="", n_ratings=100_000, n_history=62_552,
    history_fraction=DEFAULT_FRACTION, cutoff_day=date(2020, 8, 26), last_day=date(2023, 12, 31),
)  # fmt: skip

_MEMO: dict[tuple[str, str, float, int | None], SplitManifest] = {}


def _cache_file(cache_dir: Path, dataset_id: str, fraction: float, history_count: int | None) -> Path:
    key = f"h{history_count}" if history_count is not None else f"f{fraction!r}"
    return cache_dir / f"{dataset_id}.{key}.json"


def _cached(path: Path | None, source_dir: str) -> SplitManifest | None:
    """A cached manifest for this content, or None (a missing or unreadable cache is no error)."""
    if path is None or not path.is_file():
        return None
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError):
        return None
    return manifest if manifest.source_dir == source_dir else None


def split_manifest(
    data_dir: str | Path,
    fraction: float = DEFAULT_FRACTION,
    history_count: int | None = None,
    *,
    cache_dir: Path | None = None,
    write_cache: bool = False,
) -> SplitManifest:
    """The split of the dataset in `data_dir`: the one source of truth for its history and future days.

    A pure function of the directory's content (`dataset_identity` keys it, so an edited dataset
    gets a new split). Memoised in the process; `cache_dir` adds a cache on disk keyed by the same
    identity, read when present and written only when `write_cache` (best effort: a read-only home
    just recomputes). Nothing else is ever read or written.
    """
    root = Path(data_dir).absolute()
    identity = dataset_identity(root)
    memo_key = (str(root), identity, fraction, history_count)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    cache = _cache_file(cache_dir, identity, fraction, history_count) if cache_dir else None
    manifest = _cached(cache, str(root))
    if manifest is None:
        try:
            manifest = compute_split(scan_ratings(root), fraction, history_count, identity, str(root))
        except pl.exceptions.PolarsError:  # lines a typed reader cannot read: split the ones it can
            manifest = compute_split(_readable_ratings(root), fraction, history_count, identity, str(root))
        if cache is not None and write_cache:
            try:
                write_manifest(cache, manifest)
            except OSError:
                pass  # an optimisation only
    _MEMO[memo_key] = manifest
    return manifest


def _readable_ratings(root: Path) -> pl.LazyFrame:
    """The ratings lines whose four fields parse (raw_ratings quarantines the others)."""
    lf = pl.scan_csv(dataset_files(root).ratings, schema_overrides=RATINGS_COLUMNS, ignore_errors=True,
                     truncate_ragged_lines=True)
    return lf.drop_nulls().select(epoch_to_utc("timestamp").alias("rated_at"))


def expected_manifest(data_dir: Path, default_dataset: Path, cache_dir: Path | None = None) -> SplitManifest:
    """`split_manifest(data_dir)`; before the synthetic default exists, the split it will have."""
    if data_dir == default_dataset and not (data_dir / "ratings.csv").is_file():
        return replace(SYNTHETIC_DEFAULT, source_dir=str(default_dataset))
    return split_manifest(data_dir, cache_dir=cache_dir)
