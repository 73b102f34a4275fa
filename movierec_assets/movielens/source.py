"""Readers for a MovieLens directory in the modern CSV format (ml-latest-small, ml-25m, ml-32m).

Files are UTF-8 with a header row, quoted titles that may contain commas, and CRLF or LF line
endings. These readers trust the data (typed, fast reads); the strict, row-quarantining parser for
ingestion lives in `movierec_assets.ingest.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

GENRES: list[str] = [
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western", "(no genres listed)",
]  # fmt: skip
NO_GENRES = "(no genres listed)"

RATINGS_COLUMNS = {"userId": pl.Int32, "movieId": pl.Int32, "rating": pl.Float32, "timestamp": pl.Int64}
MOVIES_COLUMNS = {"movieId": pl.Int32, "title": pl.String, "genres": pl.String}
TAGS_COLUMNS = {"userId": pl.Int32, "movieId": pl.Int32, "tag": pl.String, "timestamp": pl.Int64}
LINKS_COLUMNS = {"movieId": pl.Int32, "imdbId": pl.String, "tmdbId": pl.Int32}

RATINGS_SCHEMA = pl.Schema(
    {"user_id": pl.Int32, "movie_id": pl.Int32, "rating": pl.Float32, "rated_at": pl.Datetime("us", "UTC")}
)
MOVIES_SCHEMA = pl.Schema(
    {"movie_id": pl.Int32, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)}
)

# A trailing "(1995)" or a range "(2006-2007)" / "(2006–2007)" / "(2006– )", then optional spaces.
YEAR_PATTERN = r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?\s*)?\)\s*$"


class DataFormatError(ValueError):
    """A MovieLens file is missing, is not CSV, or lacks columns; the message names the file."""


@dataclass(frozen=True)
class DatasetFiles:
    root: Path
    ratings: Path
    movies: Path
    tags: Path | None
    links: Path | None


def dataset_files(directory: str | Path) -> DatasetFiles:
    """The files of a MovieLens directory; raises naming the directory and the missing file."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"MovieLens directory {root} does not exist (or is not a directory)")
    for required in ("ratings.csv", "movies.csv"):
        if not (root / required).is_file():
            raise FileNotFoundError(f"MovieLens directory {root} has no {required}")
    optional = {name: root / f"{name}.csv" for name in ("tags", "links")}
    return DatasetFiles(
        root=root,
        ratings=root / "ratings.csv",
        movies=root / "movies.csv",
        tags=optional["tags"] if optional["tags"].is_file() else None,
        links=optional["links"] if optional["links"].is_file() else None,
    )


def check_header(path: Path, required: dict[str, pl.DataType] | list[str]) -> list[str]:
    """Read line 1 of `path` and fail clearly if it is not a CSV header with the required columns."""
    try:
        with open(path, "rb") as fh:
            raw = fh.readline(64 * 1024)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read: {exc}") from None
    try:
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: line 1: not a UTF-8 CSV file (undecodable header)") from None
    header = [name.strip().strip('"') for name in line.split(",")]
    missing = [name for name in required if name not in header]
    if missing:
        shown = line if len(line) <= 120 else line[:117] + "..."
        raise DataFormatError(
            f"{path}: line 1: not a MovieLens CSV header, missing column(s) {', '.join(missing)} "
            f"(found: {shown!r})"
        )
    return header


def _first_bad_line(path: Path, columns: dict[str, pl.DataType]) -> str:
    """Best-effort location of the first row whose fields do not cast, for the error message."""
    try:
        text = pl.read_csv(path, infer_schema=False, columns=list(columns), encoding="utf8-lossy")
    except pl.exceptions.PolarsError as exc:
        return f"unparseable CSV ({str(exc).splitlines()[0]})"
    for name, dtype in columns.items():
        if dtype == pl.String:
            continue
        bad = text.with_row_index("row").filter(
            pl.col(name).is_not_null() & pl.col(name).str.strip_chars().cast(dtype, strict=False).is_null()
        )
        if bad.height:
            row = bad.row(0, named=True)
            # Line numbers assume no newlines inside quoted fields (true for MovieLens files).
            return f"line {row['row'] + 2}: column {name}: {row[name]!r} is not {dtype}"
    return "unparseable CSV"


def _read_csv(path: Path, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    check_header(path, columns)
    try:
        frame = pl.read_csv(path, columns=list(columns), schema_overrides=columns, encoding="utf8")
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        raise DataFormatError(f"{path}: {_first_bad_line(path, columns)}") from None
    _reject_nul(path, frame)
    return frame


def _reject_nul(path: Path, frame: pl.DataFrame) -> None:
    """PostgreSQL text cannot hold NUL: fail here, naming the line, rather than deep inside COPY."""
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        rows = frame.select(pl.arg_where(pl.col(name).str.contains("\x00", literal=True))).to_series()
        if rows.len():
            raise DataFormatError(f"{path}: line {rows[0] + 2}: column {name} holds a NUL byte")


def parse_movies(raw: pl.DataFrame) -> pl.DataFrame:
    """movieId/title/genres strings -> the movies contract (year from the title, genre lists)."""
    return raw.select(
        pl.col("movieId").cast(pl.Int32).alias("movie_id"),
        pl.col("title"),
        pl.col("title").str.extract(YEAR_PATTERN, 1).cast(pl.Int32).alias("year"),
        pl.when(pl.col("genres").is_null() | (pl.col("genres") == NO_GENRES))
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("genres").str.split("|"))
        .alias("genres"),
    )


def read_movies(directory: str | Path) -> pl.DataFrame:
    """movies.csv as `movie_id Int32, title String, year Int32 (nullable), genres List(String)`."""
    return parse_movies(_read_csv(dataset_files(directory).movies, MOVIES_COLUMNS))


def read_tags(directory: str | Path) -> pl.DataFrame | None:
    """tags.csv as `user_id, movie_id, tag, tagged_at (UTC)`, or None when the file is absent."""
    path = dataset_files(directory).tags
    if path is None:
        return None
    return _read_csv(path, TAGS_COLUMNS).select(
        pl.col("userId").alias("user_id"),
        pl.col("movieId").alias("movie_id"),
        pl.col("tag"),
        epoch_to_utc("timestamp").alias("tagged_at"),
    )


def read_links(directory: str | Path) -> pl.DataFrame | None:
    """links.csv as `movie_id Int32, imdb_id String (zero-padded as given), tmdb_id Int32`, or None."""
    path = dataset_files(directory).links
    if path is None:
        return None
    return _read_csv(path, LINKS_COLUMNS).select(
        pl.col("movieId").alias("movie_id"),
        pl.col("imdbId").alias("imdb_id"),
        pl.col("tmdbId").alias("tmdb_id"),
    )


def epoch_to_utc(column: str) -> pl.Expr:
    return pl.from_epoch(column, time_unit="s").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def scan_ratings(directory_or_file: str | Path) -> pl.LazyFrame:
    """A typed lazy scan of a trusted ratings.csv into the ratings contract dtypes.

    Accepts a MovieLens directory or a ratings CSV path. The header is checked eagerly so that a
    wrong file fails here with its name; cast failures surface at collect time from Polars.
    """
    path = Path(directory_or_file)
    if path.is_dir():
        path = dataset_files(path).ratings
    elif not path.is_file():
        raise FileNotFoundError(f"ratings file {path} does not exist")
    check_header(path, RATINGS_COLUMNS)
    return pl.scan_csv(path, schema_overrides=RATINGS_COLUMNS).select(
        pl.col("userId").alias("user_id"),
        pl.col("movieId").alias("movie_id"),
        pl.col("rating"),
        epoch_to_utc("timestamp").alias("rated_at"),
    )


def read_ratings(directory_or_file: str | Path) -> pl.DataFrame:
    """Eager `scan_ratings`, with parse failures reported with the file name and line."""
    lf = scan_ratings(directory_or_file)
    try:
        return lf.collect()
    except pl.exceptions.PolarsError:
        path = Path(directory_or_file)
        path = path / "ratings.csv" if path.is_dir() else path
        raise DataFormatError(f"{path}: {_first_bad_line(path, RATINGS_COLUMNS)}") from None
