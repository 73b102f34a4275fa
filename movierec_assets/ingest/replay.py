"""The replay producer: stands in for the upstream system that delivers one ratings file per day.

It writes the next future days of the dataset's split (`split_manifest`) into the landing zone as `YYYY-MM-DD.csv`
(MovieLens ratings header; header only on a day without ratings). Resumable, and it never writes a
day twice: a day whose file exists is skipped, and each file appears atomically (temp file, then a
hard link that fails if the name exists), so the sensor never sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

from movierec_assets.config import configured_data_dir
from movierec_assets.ingest.landing import day_file_name, missing_days
from movierec_assets.movielens.source import scan_ratings
from movierec_assets.movielens.split import SplitManifest, day_of, future_frame, split_manifest

HEADER = "userId,movieId,rating,timestamp"


def pending_days(manifest: SplitManifest, landing_dir: Path, days: int | None, until: date | None) -> list[date]:
    """The future days still without a landing file: the first `days` of them, up to `until`."""
    if days is not None and days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    todo = missing_days(landing_dir, manifest.future_days())
    if until is not None:
        todo = [d for d in todo if d <= until]
    return todo if days is None else todo[:days]


def day_csv(frame: pl.DataFrame) -> bytes:
    """One day's ratings in the MovieLens CSV format (epoch seconds), in (timestamp, user, movie) order."""
    out = frame.sort("rated_at", "user_id", "movie_id").select(
        pl.col("user_id").alias("userId"),
        pl.col("movie_id").alias("movieId"),
        pl.col("rating"),
        pl.col("rated_at").dt.epoch("s").alias("timestamp"),
    )
    return out.write_csv(include_header=True, line_terminator="\n").encode()


def write_day_file(landing_dir: Path, day: date, content: bytes) -> bool:
    """Publish one day file atomically; False (and nothing written) when the day already exists."""
    final = landing_dir / day_file_name(day)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=landing_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, final)  # atomic, and never replaces an existing day file
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _future_by_day(source_dir: Path, manifest: SplitManifest, wanted: list[date]) -> dict[date, pl.DataFrame]:
    """The future ratings of the wanted days, read once and split by day."""
    lf = future_frame(scan_ratings(source_dir), manifest).with_columns(day_of("rated_at").alias("_day"))
    frame = lf.filter(pl.col("_day").is_between(wanted[0], wanted[-1])).collect()
    parts = frame.partition_by("_day", as_dict=True, include_key=False)
    return {key[0]: part for key, part in parts.items()}


def replay(
    source_dir: Path | str | None,
    landing_dir: Path | str,
    days: int | None = None,
    until: date | None = None,
    manifest: SplitManifest | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[date]:
    """Write the next `days` future days (and/or every one up to `until`) into `landing_dir`.

    Both None: every remaining day. Returns the days written, in order. `source_dir` defaults to
    the manifest's, else the configured dataset; `manifest` defaults to `split_manifest(source_dir)`
    and must describe that dataset.
    """
    if source_dir is None and manifest is None:
        source_dir = configured_data_dir()
    source = Path(source_dir or manifest.source_dir).absolute()  # type: ignore[union-attr]
    manifest = manifest or split_manifest(source)
    if source.resolve() != Path(manifest.source_dir).resolve():
        raise ValueError(f"the split manifest describes {manifest.source_dir}, not {source}")
    landing = Path(landing_dir)
    landing.mkdir(parents=True, exist_ok=True)
    todo = pending_days(manifest, landing, days, until)
    if not todo:
        return []
    by_day = _future_by_day(source, manifest, todo)
    empty = pl.DataFrame(schema={"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32,
                                 "rated_at": pl.Datetime("us", "UTC")})
    written: list[date] = []
    for day in todo:
        if write_day_file(landing, day, day_csv(by_day.get(day, empty))):
            written.append(day)
        if progress:
            progress(1)
    return written
