"""A synthetic MovieLens-format dataset with a learnable structure, written fast in vectorised chunks.

Structure: Zipf-like movie popularity; at least 20 ratings per user (heavy-tailed counts); no
duplicate (user, movie) pair; ratings from a latent model (user/movie biases + low-rank factors +
user genre affinity + noise) quantised to MovieLens stars (mostly whole, some half) with a mean
near 3.5; timestamps over many years with more activity later. Same seed -> byte-identical files.

Exposure is taste-aware ("missing not at random", Marlin et al. 2007): people rate what they
chose to watch, and choose what they expect to like. User u picks movie m with probability
proportional to pop_m * min(1, exp(GAMMA * (a_um - SATURATION))), a_um being the latent preference
that also drives the rating (factors + genre taste, in stars, std ~0.77), drawn by rejection of
popularity draws (~40% accepted). GAMMA = 1/star, SATURATION = 1.2 stars (top ~6% of draws always
accepted) is moderate: rated pairs average ~0.4 star more affinity than popularity-only draws (a
movie shown at random would rate ~0.4 below the observed mean, the direction Marlin et al. found
for random vs self-selected songs), taste-favoured movies (a > 0) rise from 50% to ~70% of the
ratings, and the top 1% of movies still hold 20% of them at 60k and 42% at 32M.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from movierec_assets.movielens.source import GENRES

DEFAULT_RATINGS = 100_000
DEFAULT_SEED = 42
MIN_PER_USER = 20
FACTOR_DIM = 8
TASTE_DIM = 8  # rank of the user genre affinities (tastes for related genres correlate)
CHUNK_RATINGS = 1_000_000  # fixed: chunk boundaries are part of the deterministic output
EXPOSURE_GAMMA = 1.0  # per star of affinity; see the module docstring for the choice
EXPOSURE_SATURATION = 1.2  # stars of affinity above which exposure no longer grows
BASE_RATING = 3.27  # 3.63 before exposure lifted affinity ~0.4: mean stays ~3.5, 4+ stars ~48%
OVERSAMPLE = 3  # candidates drawn per missing movie and round (about 40% are accepted)
GENERATORS = 2  # generation threads; peak memory grows by about 150 MB per thread
REAL_GENRES = GENRES[:-1]
# Relative genre frequencies in ml-latest-small (same order as REAL_GENRES).
GENRE_WEIGHTS = np.array(
    [1828, 1263, 611, 664, 3756, 1199, 440, 4361, 779, 87, 978, 158, 334, 573, 1596, 980, 1894, 382, 167],
    dtype=np.float64,
)
TAG_WORDS = ["classic", "atmospheric", "funny", "dark", "thought-provoking", "overrated", "twist ending"]
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class SynthPlan:
    n_ratings: int
    n_users: int
    n_movies: int
    seed: int
    start: datetime
    end: datetime


def plan(n_ratings: int, seed: int = DEFAULT_SEED, start_year: int = 2005, end_year: int = 2023) -> SynthPlan:
    """Scale users and movies with N like MovieLens (ml-32m: ~200k users, ~87k movies for 32M)."""
    if n_ratings < MIN_PER_USER:
        raise ValueError(f"need at least {MIN_PER_USER} ratings (one user), got {n_ratings}")
    if end_year <= start_year:
        raise ValueError(f"end_year {end_year} must be after start_year {start_year}")
    n_movies = max(100, round(9_742 * (n_ratings / 100_836) ** 0.38))
    n_users = max(1, min(n_ratings // MIN_PER_USER, round(n_ratings / 160)))
    n_users = max(n_users, math.ceil(n_ratings / _max_per_user(n_movies)))
    if n_users * MIN_PER_USER > n_ratings:
        raise ValueError(f"{n_ratings} ratings cannot give {n_users} users {MIN_PER_USER} ratings each")
    return SynthPlan(
        n_ratings, n_users, n_movies, seed,
        datetime(start_year, 1, 1, tzinfo=UTC), datetime(end_year + 1, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def _max_per_user(n_movies: int) -> int:
    return max(MIN_PER_USER, n_movies // 3)


# ---------------------------------------------------------------- the latent world (movies, users)


@dataclass
class _Movies:
    genres: np.ndarray  # (M, 19) bool
    years: np.ndarray  # (M,) int, 0 = no year in the title
    vec: np.ndarray  # (M, FACTOR_DIM + TASTE_DIM) float32: factors, then genre mix @ taste basis
    bias: np.ndarray  # (M,) float32
    alias_prob: np.ndarray  # popularity as an alias table (O(1) vectorised sampling)
    alias_idx: np.ndarray


@dataclass
class _Users:
    counts: np.ndarray  # (U,) int64, >= MIN_PER_USER, sum = N
    vec: np.ndarray  # (U, FACTOR_DIM + TASTE_DIM) float32: factors, then taste coordinates
    bias: np.ndarray  # (U,) float32
    start: np.ndarray  # (U,) int64 epoch seconds of the first rating
    span: np.ndarray  # (U,) int64 seconds of activity


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias method; built once (loop over M is fine), then sampling is two array ops."""
    n = len(weights)
    scaled = weights / weights.sum() * n
    prob = np.ones(n)
    alias = np.arange(n)
    small = [int(i) for i in np.flatnonzero(scaled < 1.0)]
    large = [int(i) for i in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


def _make_movies(p: SynthPlan, rng: np.random.Generator) -> _Movies:
    m = p.n_movies
    n_genres = rng.choice([0, 1, 2, 3], size=m, p=[0.005, 0.445, 0.35, 0.2])
    picks = rng.choice(len(REAL_GENRES), size=(m, 3), p=GENRE_WEIGHTS / GENRE_WEIGHTS.sum())
    genres = np.zeros((m, len(REAL_GENRES)), dtype=bool)
    for j in range(3):
        rows = np.flatnonzero(n_genres > j)
        genres[rows, picks[rows, j]] = True
    years = np.clip(p.end.year - 1 - np.floor(rng.exponential(18.0, m)), 1915, p.end.year - 1).astype(
        np.int64
    )
    years[rng.random(m) < 0.002] = 0  # a few titles without a year, as in the real files
    weights = 1.0 / (rng.permutation(m) + 5.0) ** 1.05  # Zipf-like over a random popularity rank
    norm = genres / np.maximum(genres.sum(axis=1, keepdims=True), 1)
    factors = rng.normal(0.0, 0.45, (m, FACTOR_DIM))
    log_pop = np.log(weights)
    bias = rng.normal(0.0, 0.3, m) + 0.12 * (log_pop - log_pop.mean()) / log_pop.std()
    bias -= (bias * weights).sum() / weights.sum()  # centre on the average *rated* movie
    prob, alias = _alias_table(weights)
    # A user's affinity for genre g is taste_u . basis[:, g] (std 0.6); a movie's genre term is its
    # genre mix projected on the basis, so the dot product needs 16 floats per row, not 27.
    basis = rng.normal(0.0, 0.6 / math.sqrt(TASTE_DIM), (TASTE_DIM, len(REAL_GENRES)))
    vec = np.hstack([factors, norm @ basis.T]).astype(np.float32)
    return _Movies(genres, years, vec, bias.astype(np.float32), prob, alias)


def _user_counts(p: SynthPlan, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed per-user counts, each in [MIN_PER_USER, max], summing exactly to N."""
    cap = _max_per_user(p.n_movies) - MIN_PER_USER
    extra_total = p.n_ratings - MIN_PER_USER * p.n_users
    w = rng.lognormal(0.0, 1.3, p.n_users)
    extra = np.minimum(np.floor(w / w.sum() * extra_total).astype(np.int64), cap)
    while (left := extra_total - int(extra.sum())) > 0:
        room = rng.permutation(np.flatnonzero(extra < cap))
        extra[room[:left]] += 1
    return extra + MIN_PER_USER


def _make_users(p: SynthPlan, rng: np.random.Generator) -> _Users:
    u = p.n_users
    counts = _user_counts(p, rng)
    factors = rng.normal(0.0, 0.45, (u, FACTOR_DIM))
    taste = rng.normal(0.0, 1.0, (u, TASTE_DIM))
    t0, t1 = int(p.start.timestamp()), int(p.end.timestamp())
    # First-rating times with a linearly growing density (more users join later), then a
    # heavy-tailed activity span (most users rate within weeks, some over years).
    start = t0 + (np.sqrt(rng.random(u)) * (t1 - t0)).astype(np.int64)
    span = np.minimum(rng.lognormal(math.log(20 * 86_400), 2.0, u).astype(np.int64), t1 - 1 - start)
    vec = np.hstack([factors, taste]).astype(np.float32)
    return _Users(counts, vec, rng.normal(0.0, 0.35, u).astype(np.float32), start, np.maximum(span, 0))


def latent_world(p: SynthPlan) -> tuple[_Movies, _Users]:
    """The movies and users (latent vectors, biases, popularity) that `write_synthetic(p)` rates."""
    world = np.random.default_rng(np.random.SeedSequence(p.seed).spawn(3)[0])
    return _make_movies(p, world), _make_users(p, world)


# ---------------------------------------------------------------- ratings, one chunk of users at a time


def _distinct_movies(
    u0: int, counts: np.ndarray, users: _Users, movies: _Movies, rng: np.random.Generator
) -> np.ndarray:
    """Sorted keys (local_user << bits) | movie_index: exactly counts[i] distinct movies for user
    u0 + i, each picked with probability proportional to popularity x exposure(affinity).

    Each round draws OVERSAMPLE candidates per missing movie, keeps the accepted ones in draw
    order (an unbiased subset) up to the number still missing, and merges the new distinct ones.
    Keys pack (user, movie) so that one integer sort orders by user then movie."""
    m, bits = len(movies.bias), _key_bits(movies)
    # uint32 keys when they fit: sorting them takes half the time of int64.
    kt = np.uint32 if bits + (len(counts) - 1).bit_length() <= 32 else np.int64
    keys = np.empty(0, dtype=kt)
    for attempt in range(200):
        need = counts - np.bincount(keys >> bits, minlength=len(counts))
        if not need.any():
            return keys
        local = np.repeat(np.arange(len(counts), dtype=np.int64), need * OVERSAMPLE)
        # Popularity first; heavy users exhaust the head, so fall back to uniform draws, and
        # after many rounds drop the exposure filter too, so that every user surely completes.
        new = sample_popular(movies, len(local), rng) if attempt < 3 else rng.integers(0, m, len(local))
        if attempt < 20:
            keep = _exposed(affinity(users.vec[u0:], local, movies.vec, new), rng)
            local, new = local[keep], new[keep]
        # `local` is sorted, so a candidate's rank within its user is its offset from the first.
        per_user = np.bincount(local, minlength=len(counts))
        first = np.repeat(np.cumsum(per_user) - per_user, per_user)
        keep = np.arange(len(local)) - first < need[local]
        new = _sorted_unique((local[keep].astype(kt) << kt(bits)) | new[keep].astype(kt))
        keys = _merge_fresh(keys, new) if len(keys) else new
    raise RuntimeError("could not draw distinct movies per user")  # unreachable with counts <= M/3


def _merge_fresh(keys: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Sorted distinct keys plus the sorted distinct `new` ones not already in them."""
    pos = np.searchsorted(keys, new)
    fresh = new[(pos >= len(keys)) | (keys[np.minimum(pos, len(keys) - 1)] != new)]
    return np.sort(np.concatenate((keys, fresh)), kind="stable")  # two sorted runs: a merge


def affinity(user_vec: np.ndarray, uid: np.ndarray, movie_vec: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """The latent preference (user factors+taste . movie factors+genre mix), in stars, per pair:
    user_vec[uid] . movie_vec[mid], the `vec` fields of the latent world.

    In blocks of 2^20 pairs: the two gathered (n, 16) float32 operands stay cache- and RAM-friendly."""
    out, block = np.empty(len(uid), dtype=np.float32), 1 << 20
    for i in range(0, len(uid), block):
        u = np.take(user_vec, uid[i : i + block], axis=0)
        out[i : i + block] = np.einsum("ij,ij->i", u, np.take(movie_vec, mid[i : i + block], axis=0))
    return out


def _exposed(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Accept a candidate with probability min(1, exp(GAMMA * (affinity - SATURATION))).

    U < exp(x) <=> -log(U) > -x, and -log(U) is a standard exponential: no exp() per candidate."""
    e = rng.standard_exponential(len(a), dtype=np.float32)
    return e > EXPOSURE_GAMMA * (EXPOSURE_SATURATION - a)


def _key_bits(movies: _Movies) -> int:
    return (len(movies.bias) - 1).bit_length()


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)  # numpy's hash-based np.unique is slower than sort + mask here
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


def sample_popular(movies: _Movies, n: int, rng: np.random.Generator) -> np.ndarray:
    j = rng.integers(0, len(movies.alias_prob), n)
    return np.where(rng.random(n) < movies.alias_prob[j], j, movies.alias_idx[j])


def _stars(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quantise to MovieLens stars: mostly whole stars, ~30% half stars, within 0.5..5."""
    half = rng.random(len(score)) < 0.3
    stars = np.where(half, np.round(score * 2.0) / 2.0, np.round(score))
    return np.clip(stars, np.where(half, 0.5, 1.0), 5.0).astype(np.float32)


def _chunk(u0: int, u1: int, users: _Users, movies: _Movies, rng: np.random.Generator) -> pl.DataFrame:
    bits = _key_bits(movies)
    keys = _distinct_movies(u0, users.counts[u0:u1], users, movies, rng)
    uid = (keys >> bits).astype(np.int64) + u0
    mid = (keys & ((1 << bits) - 1)).astype(np.int64)
    dot = affinity(users.vec, uid, movies.vec, mid)  # recomputed: cheaper than carrying it through the sorts
    noise = rng.normal(0.0, 0.5, len(keys)).astype(np.float32)
    score = BASE_RATING + users.bias[uid] + movies.bias[mid] + dot + noise
    ts = users.start[uid] + (rng.random(len(keys)) * users.span[uid]).astype(np.int64)
    return pl.DataFrame(
        {
            "userId": (uid + 1).astype(np.int32),
            "movieId": (mid + 1).astype(np.int32),
            "rating": _stars(score, rng),
            "timestamp": ts,
        }
    )


def _tags(chunk: pl.DataFrame, movies: _Movies, rng: np.random.Generator) -> pl.DataFrame:
    """About 1.5% of ratings also get a tag: the movie's first genre or a common tag word."""
    rows = np.flatnonzero(rng.random(chunk.height) < 0.015)
    sample = chunk[rows]
    mid = sample["movieId"].to_numpy() - 1
    first_genre = np.argmax(movies.genres[mid], axis=1)
    has_genre = movies.genres[mid].any(axis=1)
    vocab = np.array([g.lower() for g in REAL_GENRES] + TAG_WORDS, dtype=object)
    pick = np.where(has_genre & (rng.random(len(rows)) < 0.5), first_genre,
                    len(REAL_GENRES) + rng.integers(0, len(TAG_WORDS), len(rows)))  # fmt: skip
    return pl.DataFrame(
        {
            "userId": sample["userId"],
            "movieId": sample["movieId"],
            "tag": pl.Series(vocab[pick], dtype=pl.String),
            "timestamp": sample["timestamp"] + rng.integers(0, 3_600, len(rows)),
        }
    )


# ---------------------------------------------------------------- files


def movies_frame(movies: _Movies) -> pl.DataFrame:
    ids = np.arange(1, len(movies.years) + 1)
    cols = {f"g{g}": movies.genres[:, g] for g in range(len(REAL_GENRES))}
    base = pl.DataFrame({"id": ids.astype(np.int32), "year": movies.years, **cols})
    suffix = pl.when(pl.col("id") % 7 == 0).then(pl.lit(", The"))
    suffix = suffix.when(pl.col("id") % 11 == 0).then(pl.lit(": Part II")).otherwise(pl.lit(""))
    year = pl.when(pl.col("year") > 0).then(pl.format(" ({})", "year")).otherwise(pl.lit(""))
    names = [pl.when(pl.col(f"g{g}")).then(pl.lit(name)) for g, name in enumerate(REAL_GENRES)]
    genres = pl.concat_list(names).list.drop_nulls().list.join("|")
    return base.select(
        pl.col("id").alias("movieId"),
        pl.concat_str(pl.lit("Movie "), pl.col("id").cast(pl.String), suffix, year).alias("title"),
        pl.when(genres == "").then(pl.lit(GENRES[-1])).otherwise(genres).alias("genres"),
    )


def links_frame(n_movies: int, rng: np.random.Generator) -> pl.DataFrame:
    ids = np.arange(1, n_movies + 1)
    imdb = rng.choice(9_000_000, size=n_movies, replace=False) + 100_000
    return pl.select(
        movieId=pl.Series(ids, dtype=pl.Int32),
        imdbId=pl.Series(imdb).cast(pl.String).str.zfill(7),
        tmdbId=pl.Series(rng.choice(900_000, size=n_movies, replace=False) + 1, dtype=pl.Int32),
    )


def _user_chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive user ranges of about CHUNK_RATINGS ratings each."""
    ends = np.searchsorted(
        np.cumsum(counts), np.arange(CHUNK_RATINGS, counts.sum(), CHUNK_RATINGS), side="left"
    )
    bounds = [0, *sorted({int(e) + 1 for e in ends if e + 1 < len(counts)}), len(counts)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def write_synthetic(
    out_dir: str | Path,
    n_ratings: int = DEFAULT_RATINGS,
    seed: int = DEFAULT_SEED,
    start_year: int = 2005,
    end_year: int = 2023,
    progress: ProgressFn | None = None,
) -> SynthPlan:
    """Write ratings.csv, movies.csv, tags.csv and links.csv into `out_dir` (created if needed).

    Users are processed in chunks of about CHUNK_RATINGS ratings, generated on GENERATORS threads
    while the main thread writes. `progress(n)` is called with the ratings written per chunk.
    """
    p = plan(n_ratings, seed, start_year, end_year)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, links_seed, chunk_seed = np.random.SeedSequence(seed).spawn(3)
    movies, users = latent_world(p)
    movies_frame(movies).write_csv(out / "movies.csv")
    links_frame(p.n_movies, np.random.default_rng(links_seed)).write_csv(out / "links.csv")
    chunks = _user_chunks(users.counts)
    seeds = chunk_seed.spawn(len(chunks))

    def generate(i: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        rng = np.random.default_rng(seeds[i])
        frame = _chunk(*chunks[i], users, movies, rng)
        return frame, _tags(frame, movies, rng)

    # Chunks are generated ahead on worker threads (numpy and Polars release the GIL) and written
    # in order here; each chunk has its own seed, so the bytes do not depend on the scheduling.
    with (
        open(out / "ratings.csv", "wb") as rfh,
        open(out / "tags.csv", "wb") as tfh,
        ThreadPoolExecutor(max_workers=GENERATORS) as pool,
    ):
        ahead = [pool.submit(generate, i) for i in range(min(GENERATORS, len(chunks)))]
        for i in range(len(chunks)):
            frame, tags = ahead.pop(0).result()
            if i + GENERATORS < len(chunks):
                ahead.append(pool.submit(generate, i + GENERATORS))
            frame.write_csv(rfh, include_header=i == 0, float_precision=1)
            tags.write_csv(tfh, include_header=i == 0)
            if progress is not None:
                progress(frame.height)
    return p


def ensure_default_dataset(n_ratings: int = DEFAULT_RATINGS, seed: int = DEFAULT_SEED) -> Path:
    """The embedded default dataset under `paths().default_dataset`, generated once, atomically."""
    from movierec_assets.config import paths

    target = paths().default_dataset
    if (target / "ratings.csv").is_file() and (target / "movies.csv").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write_synthetic(tmp, n_ratings, seed)
        os.chmod(tmp, 0o755)  # the embedded server's OS user may need to read it
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "ratings.csv").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
