"""A tiny hand-made MovieLens directory (real CSV files) for evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi"]


def write_tiny_movielens(root: Path, n_users: int = 14, n_movies: int = 20, per_user: int = 12,
                         days: int = 40, seed: int = 7) -> Path:
    """ratings.csv, movies.csv and tags.csv: every user rates `per_user` movies over `days` days
    (the last three users only in the last 15%, after Protocol A's cutoff)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    day0 = 1_500_000_000 - 1_500_000_000 % 86_400
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, n_users + 1):
        movies = rng.choice(np.arange(1, n_movies + 1), per_user, replace=False)
        first = int(days * 0.85) if user > n_users - 3 else 0  # the last 3 users arrive late: "new"
        times = np.sort(day0 + rng.integers(first * 86_400, days * 86_400, per_user))
        for movie, ts in zip(movies, times, strict=True):
            rating = rng.choice([2.0, 3.0, 3.5, 4.0, 4.5, 5.0])
            lines.append(f"{user},{movie},{rating},{ts}")
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies_csv = ["movieId,title,genres"]
    for movie in range(1, n_movies + 1):
        genres = "|".join(GENRES[(movie + j) % len(GENRES)] for j in range(1 + movie % 2))
        movies_csv.append(f'{movie},"Movie {movie}, The ({1980 + movie})",{genres}')
    (root / "movies.csv").write_text("\n".join(movies_csv) + "\n")
    (root / "tags.csv").write_text(f"userId,movieId,tag,timestamp\n1,1,funny,{day0 + 5}\n2,3,dark,{day0 + 9}\n")
    return root
