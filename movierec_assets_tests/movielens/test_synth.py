"""The synthetic generator: MovieLens format, realistic structure, a learnable signal, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from movierec_assets.movielens.source import GENRES, read_links, read_movies, read_ratings, read_tags
from movierec_assets.movielens.synth import (
    affinity,
    ensure_default_dataset,
    latent_world,
    plan,
    sample_popular,
    write_synthetic,
)

N = 60_000
FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "s42"
    write_synthetic(out, N, seed=42)
    return out


def _digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in FILES}


def test_format_and_counts(synth_dir: Path) -> None:
    assert (synth_dir / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    ratings, movies = read_ratings(synth_dir), read_movies(synth_dir)
    p = plan(N, 42)
    assert ratings.height == N and movies.height == p.n_movies
    assert ratings["user_id"].n_unique() == p.n_users
    assert ratings.select(pl.struct("user_id", "movie_id").is_unique().all()).item()
    assert set(ratings["movie_id"].unique()) <= set(movies["movie_id"])
    # Titles carry years (a few do not, like the real files) and some contain commas (quoted).
    assert movies["year"].null_count() < 0.01 * movies.height
    assert movies.filter(pl.col("title").str.contains(", The \\(")).height > 0
    assert b'"Movie 7, The (' in (synth_dir / "movies.csv").read_bytes()
    assert set(movies["genres"].explode().drop_nulls()) <= set(GENRES[:-1])
    tags, links = read_tags(synth_dir), read_links(synth_dir)
    assert tags is not None and tags.height > 0 and links is not None and links.height == movies.height


def test_ratings_structure(synth_dir: Path) -> None:
    ratings = read_ratings(synth_dir)
    per_user = ratings.group_by("user_id").len()["len"]
    assert per_user.min() >= 20 and per_user.max() > 5 * per_user.median()
    values = ratings["rating"]
    assert set(values.unique().to_list()) <= {x / 2 for x in range(1, 11)}
    assert 3.3 <= values.mean() <= 3.7
    pop = ratings.group_by("movie_id").len().sort("len", descending=True)["len"]
    top = max(1, read_movies(synth_dir).height // 100)
    assert pop.head(top).sum() / N > 0.15  # the top 1% of movies hold a large share
    by_year = ratings.group_by(pl.col("rated_at").dt.year().alias("y")).len().sort("y")
    assert by_year["y"].max() - by_year["y"].min() >= 5
    years = by_year["y"].to_numpy()
    mid = (years.min() + years.max()) / 2
    assert by_year.filter(pl.col("y") > mid)["len"].sum() > by_year.filter(pl.col("y") <= mid)["len"].sum()


def test_user_genre_taste_is_learnable(synth_dir: Path) -> None:
    """A user's mean rating per genre on half the data predicts the other half better than the
    user's overall mean: the genre-affinity signal that the features and model should learn."""
    ratings = read_ratings(synth_dir).join(
        read_movies(synth_dir).select("movie_id", pl.col("genres").list.first().alias("genre")), on="movie_id"
    )
    ratings = ratings.with_columns((pl.col("movie_id") % 2 == 0).alias("train"))
    train, test = ratings.filter("train"), ratings.filter(~pl.col("train"))
    user_mean = train.group_by("user_id").agg(pl.col("rating").mean().alias("um"))
    genre_mean = train.group_by("user_id", "genre").agg(
        pl.col("rating").mean().alias("gm"), pl.len().alias("n")
    )
    joined = test.join(user_mean, on="user_id").join(
        genre_mean.filter(pl.col("n") >= 5), on=["user_id", "genre"]
    )
    err_user = np.mean((joined["rating"] - joined["um"]).to_numpy() ** 2)
    err_genre = np.mean((joined["rating"] - joined["gm"]).to_numpy() ** 2)
    assert err_genre < 0.97 * err_user


def test_exposure_follows_taste(synth_dir: Path) -> None:
    """Users rate what they expect to like: rated pairs have clearly more latent affinity than
    popularity-only draws for the same users (missing not at random). The popularity skew that
    remains is checked in test_ratings_structure."""
    movies, users = latent_world(plan(N, 42))
    ratings = read_ratings(synth_dir)
    uid, mid = ratings["user_id"].to_numpy() - 1, ratings["movie_id"].to_numpy() - 1
    rated = affinity(users.vec, uid, movies.vec, mid)
    drawn = sample_popular(movies, len(uid), np.random.default_rng(0))  # popularity-only exposure
    popular = affinity(users.vec, uid, movies.vec, drawn)
    assert rated.mean() - popular.mean() > 0.25  # ~0.4 star; 0.0 with popularity-only exposure
    assert (rated > 0).mean() > (popular > 0).mean() + 0.12  # ~70% vs ~50% favoured by taste
    # The lift is per user, not a few heavy users: most users' rated affinity beats their draws.
    per_user = pl.DataFrame({"u": uid, "d": rated - popular}).group_by("u").agg(pl.col("d").mean())
    assert (per_user["d"] > 0).mean() > 0.9  # 0.99 here; about half without the tilt


def test_same_seed_same_bytes_other_seed_differs(synth_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_synthetic(again, N, seed=42)
    assert _digests(again) == _digests(synth_dir)
    other = tmp_path / "other"
    write_synthetic(other, N, seed=7)
    assert _digests(other)["ratings.csv"] != _digests(synth_dir)["ratings.csv"]


def test_small_and_invalid_sizes(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "tiny", 45, seed=1)
    tiny = read_ratings(tmp_path / "tiny")
    assert tiny.height == 45 and tiny.group_by("user_id").len()["len"].min() >= 20
    with pytest.raises(ValueError, match="at least 20 ratings"):
        plan(19)


def test_ensure_default_dataset_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path / "home"))
    first = ensure_default_dataset(n_ratings=5_000)
    stamp = (first / "ratings.csv").stat().st_mtime_ns
    assert read_ratings(first).height == 5_000
    assert ensure_default_dataset(n_ratings=5_000) == first
    assert (first / "ratings.csv").stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp dirs left
