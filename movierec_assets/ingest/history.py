"""The work behind `raw_movies` and `raw_ratings`: a MovieLens directory -> PostgreSQL.

`load_movie_tables` replaces movies, tags and links. `load_history` parses and validates the
whole ratings.csv, keeps the history part of the dataset's split (UTC day <= cutoff_day), and
replaces the history rows and their quarantine rows in one transaction; rows dated after the
cutoff belong to the daily partitions and are left to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from movierec_assets.config import configured_data_dir, paths
from movierec_assets.db import bulk
from movierec_assets.ingest.load import (
    MAX_REJECT_SHARE,
    LoadStats,
    MoviesStats,
    check_reject_share,
    load_movies,
    replace_history,
)
from movierec_assets.ingest.validate import (
    parse_ratings_file,
    split_rejects_by_day,
    validate_ratings,
)
from movierec_assets.movielens.source import dataset_files, read_links, read_movies, read_tags
from movierec_assets.movielens.split import SplitManifest, split_manifest
from movierec_assets.movielens.synth import ensure_default_dataset


def resolve_data_dir(configured: str = "") -> Path:
    """The MovieLens directory to ingest: the configured one, else `configured_data_dir()`.

    The synthetic default dataset is generated on first use.
    """
    if configured:
        return Path(configured).absolute()
    data_dir = configured_data_dir()
    if data_dir == paths().default_dataset:
        ensure_default_dataset()
    return data_dir


def load_movie_tables(url: str, data_dir: Path) -> MoviesStats:
    """Read movies.csv (+ optional tags.csv, links.csv) and replace the three tables atomically."""
    movies = read_movies(data_dir)
    return load_movies(url, movies, read_tags(data_dir), read_links(data_dir))


@dataclass(frozen=True)
class HistoryLoad:
    manifest: SplitManifest
    source_file: str
    lines: int  # data lines in the file (history and future)
    rows: int  # history rows loaded
    rejected: int  # history rows quarantined
    min_rated_at: datetime | None
    max_rated_at: datetime | None
    parse_seconds: float
    validate_seconds: float
    load: LoadStats
    seconds: float  # end to end: read, validate, load, index, swap

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def known_movie_ids(url: str) -> pl.Series:
    return bulk.read_polars(url, "SELECT movie_id FROM movielens.movies").to_series()


def load_history(url: str, data_dir: Path, max_reject_share: float = MAX_REJECT_SHARE) -> HistoryLoad:
    """Validate ratings.csv and replace the history rows; raises before writing anything when the
    file is not a ratings CSV or too many history rows are bad."""
    started = time.perf_counter()
    path = dataset_files(data_dir).ratings
    parsed = parse_ratings_file(path, source_name=str(path))
    parsed_at = time.perf_counter()
    manifest = split_manifest(data_dir)  # the split the definitions' partitions come from
    history = parsed.good.filter(pl.col("rated_at").dt.date() <= manifest.cutoff_day)
    good, context_rejects = validate_ratings(history, known_movie_ids(url))
    line_rejects, _future = split_rejects_by_day(parsed.rejected, manifest.cutoff_day)
    rejected = pl.concat([line_rejects, context_rejects]).sort("line_number")
    validated_at = time.perf_counter()
    check_reject_share(good.height, rejected.height, max_reject_share, source_file=str(path), rejected=rejected)
    stats = replace_history(url, good, rejected, str(path), keep_partitions_after=manifest.cutoff_day)
    span = good.select(lo=pl.col("rated_at").min(), hi=pl.col("rated_at").max()).row(0)
    return HistoryLoad(
        manifest=manifest,
        source_file=str(path),
        lines=parsed.n_lines,
        rows=good.height,
        rejected=stats.rejected,
        min_rated_at=span[0],
        max_rated_at=span[1],
        parse_seconds=parsed_at - started,
        validate_seconds=validated_at - parsed_at,
        load=stats,
        seconds=time.perf_counter() - started,
    )
