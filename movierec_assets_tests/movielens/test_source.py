"""The MovieLens readers: real ml-latest-small invariants, exact values on hand-made files, bad input."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from movierec_assets.movielens.source import (
    GENRES,
    MOVIES_SCHEMA,
    RATINGS_SCHEMA,
    DataFormatError,
    dataset_files,
    read_links,
    read_movies,
    read_ratings,
    read_tags,
    scan_ratings,
)

MOVIES_CSV = (
    "movieId,title,genres\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "27008,From Dusk Till Dawn 2: Texas Blood Money (1999) ,Comedy|Crime|Horror\n"
    "40697,Babylon 5,Sci-Fi\n"
    "171749,Death Note: Desu nôto (2006–2007),(no genres listed)\n"
    "172591,The Godfather Trilogy: 1972-1990 (1992),(no genres listed)\n"
)
RATINGS_CSV = "userId,movieId,rating,timestamp\n1,11,4.0,964982703\n2,40697,0.5,0\n2,11,5.0,1700000000\n"


def write_dir(root: Path, newline: str = "\n", ratings: str = RATINGS_CSV, movies: str = MOVIES_CSV) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.csv").write_bytes(ratings.replace("\n", newline).encode())
    (root / "movies.csv").write_bytes(movies.replace("\n", newline).encode())
    return root


def test_genres_is_the_fixed_list() -> None:
    assert len(GENRES) == 20 and GENRES[0] == "Action" and GENRES[-1] == "(no genres listed)"


def test_ml_small_counts_and_contract(ml_small: Path) -> None:
    movies = read_movies(ml_small)
    ratings = read_ratings(ml_small)
    assert (ratings.height, movies.height) == (100_836, 9_742)
    assert ratings.schema == RATINGS_SCHEMA and movies.schema == MOVIES_SCHEMA
    assert scan_ratings(ml_small).select(pl.len()).collect().item() == 100_836
    assert movies["movie_id"].is_unique().all()
    # Every genre string in the real file is one of ours.
    assert set(movies["genres"].explode().drop_nulls().unique()) <= set(GENRES[:-1])
    tags, links = read_tags(ml_small), read_links(ml_small)
    assert tags is not None and tags.height == 3_683 and links is not None and links.height == 9_742


def test_ml_small_titles_years_and_genres(ml_small: Path) -> None:
    movies = read_movies(ml_small)
    by_id = {row["movie_id"]: row for row in movies.iter_rows(named=True)}
    assert by_id[11]["title"] == "American President, The (1995)"
    assert (by_id[11]["year"], by_id[11]["genres"]) == (1995, ["Comedy", "Drama", "Romance"])
    assert by_id[1]["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert by_id[27008]["year"] == 1999  # trailing space after the year
    assert by_id[40697]["year"] is None  # "Babylon 5": no year
    assert by_id[171749]["year"] == 2006 and by_id[171749]["genres"] == []  # (2006–2007), no genres
    titles_with_comma = movies.filter(pl.col("title").str.contains(",")).height
    assert titles_with_comma > 1000
    assert movies["year"].null_count() == 12  # counted independently with a plain regex below
    import re

    raw = pl.read_csv(ml_small / "movies.csv")["title"].to_list()
    assert sum(1 for t in raw if not re.search(r"\((\d{4})(?:[-–]\d{4})?\)\s*$", t)) == 12


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_hand_made_exact_values(tmp_path: Path, newline: str) -> None:
    root = write_dir(tmp_path / "ds", newline)
    movies = read_movies(root)
    assert movies.rows() == [
        (11, "American President, The (1995)", 1995, ["Comedy", "Drama", "Romance"]),
        (27008, "From Dusk Till Dawn 2: Texas Blood Money (1999) ", 1999, ["Comedy", "Crime", "Horror"]),
        (40697, "Babylon 5", None, ["Sci-Fi"]),
        (171749, "Death Note: Desu nôto (2006–2007)", 2006, []),
        (172591, "The Godfather Trilogy: 1972-1990 (1992)", 1992, []),
    ]
    ratings = read_ratings(root)
    assert ratings["rating"].to_list() == [4.0, 0.5, 5.0]
    assert [d.isoformat() for d in ratings["rated_at"]] == [
        "2000-07-30T18:45:03+00:00",
        "1970-01-01T00:00:00+00:00",
        "2023-11-14T22:13:20+00:00",
    ]
    assert read_tags(root) is None and read_links(root) is None


def test_crlf_and_lf_read_identically(ml_small: Path, tmp_path: Path) -> None:
    lf_dir = tmp_path / "lf"
    lf_dir.mkdir()
    for name in ("ratings.csv", "movies.csv"):
        (lf_dir / name).write_bytes((ml_small / name).read_bytes().replace(b"\r\n", b"\n"))
    assert b"\r\n" in (ml_small / "movies.csv").read_bytes()[:200]
    assert read_movies(lf_dir).equals(read_movies(ml_small))
    assert read_ratings(lf_dir).equals(read_ratings(ml_small))


def test_missing_directory_or_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_files(tmp_path / "nope")
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*movies\.csv"):
        read_movies(tmp_path)


def test_not_csv_names_the_file(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "ds")
    (root / "ratings.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(DataFormatError, match=r"ratings\.csv: line 1"):
        scan_ratings(root)
    (root / "movies.csv").write_text('{"movies": [1, 2, 3]}\n')
    with pytest.raises(DataFormatError, match=r"movies\.csv: line 1: .*missing column"):
        read_movies(root)


def test_missing_columns_names_file_and_columns(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "ds", ratings="userId,movieId,timestamp\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"ratings\.csv: line 1: .*missing column\(s\) rating"):
        read_ratings(root)


def test_bad_value_names_file_and_line(tmp_path: Path) -> None:
    bad = "userId,movieId,rating,timestamp\n1,11,4.0,964982703\n1,12,4.0,964982703\n1,x13,4.0,1\n"
    root = write_dir(tmp_path / "ds", ratings=bad)
    with pytest.raises(DataFormatError, match=r"ratings\.csv: line 4: column movieId: 'x13'"):
        read_ratings(root)
    movies = MOVIES_CSV + "abc,Broken (2000),Drama\n"
    write_dir(root, movies=movies)
    with pytest.raises(DataFormatError, match=r"movies\.csv: line 7: column movieId"):
        read_movies(root)
