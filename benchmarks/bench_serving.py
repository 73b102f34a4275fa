"""Benchmark: serving at ml-32m size (87,585 movies x 64 dims, 200k users).

Run: `python -m benchmarks.bench_serving [--users 200000] [--requests 2000] [--http-seconds 10]`.

1. In-process top 10 for one user through `Recommender.recommend`: user lookup (in memory; the
   PostgreSQL point queries are measured separately when a server is given), feature scaling, the
   user tower's forward pass (numpy replay of a [256, 128] -> 64 tower), the seen mask and the exact
   top N. Ceiling: bare `E @ u` + `np.argpartition`.
2. HTTP: uvicorn serving the same Recommender in its own process; a load generator in another
   process (asyncio + httpx, 50 concurrent clients): closed loop (as fast as possible) and open
   loop at fixed request rates. Zero errors required.
3. Batch: top 10 for every user with blocked matrix products (`top_n_batch`). Ceiling: the bare
   blocked matrix products alone.

Embeddings are random and L2-normalised; results go to benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_MOVIES = 87_585
DIMS = 64
TOWER = [256, 128]
SEEN_MEAN = 160  # ml-32m: 32M ratings / 200k users
RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
SEED = 20240601


def feature_columns() -> list[str]:
    from movierec_assets.features.compute import user_feature_columns

    return user_feature_columns()


def build_world(n_users: int, n_movies: int = N_MOVIES):  # type: ignore[no-untyped-def]
    """Random state + in-memory users shaped like ml-32m (heavy-tailed number of rated movies)."""
    from movierec_assets.serving.memory import MemoryStateLoader, MemoryUserSource, random_state, random_tower

    rng = np.random.default_rng(SEED)
    columns = feature_columns()
    movie_ids = np.arange(1, n_movies + 1, dtype=np.int64)
    tower = random_tower(rng, len(columns), TOWER, DIMS)
    state = random_state("bench", movie_ids, DIMS, tower, columns, rng)
    users = MemoryUserSource(columns)
    counts = np.minimum(rng.lognormal(np.log(SEEN_MEAN) - 0.7, 1.2, n_users).astype(np.int64) + 1, n_movies)
    feats = rng.standard_normal((n_users, len(columns))).astype(np.float32)
    for u in range(n_users):
        users.features[u + 1] = feats[u]
        users.seen[u + 1] = rng.integers(1, n_movies + 1, counts[u])
    loader = MemoryStateLoader()
    loader.publish(state)
    return loader, users, counts


def build_postgres(url: str, n_users: int) -> str:
    """The real thing at ml-32m shape: a registered champion (the model's own [256,128]->64 towers,
    untrained), its random embeddings for 87,585 movies, random user/movie features, movies and
    ratings (~SEEN_MEAN per user, heavy-tailed). Returns the model version."""
    import polars as pl

    from movierec_assets import features
    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect, connect
    from movierec_assets.ml import feature_io, registry, two_tower
    from movierec_assets.serving import embeddings
    from movierec_assets.serving.tower import l2_normalize

    rng = np.random.default_rng(SEED)
    ucols, mcols = features.user_feature_columns(), features.movie_feature_columns()
    users = pl.DataFrame({"user_id": np.arange(1, n_users + 1, dtype=np.int32),
                          **{c: rng.standard_normal(n_users) for c in ucols}})
    movies_f = pl.DataFrame({"movie_id": np.arange(1, N_MOVIES + 1, dtype=np.int32),
                             **{c: rng.standard_normal(N_MOVIES) for c in mcols}})
    features.write_user_features(url, users)
    features.write_movie_features(url, movies_f)
    stats = features.compute_scaling_stats(users, movies_f)
    features.write_scaling_stats(url, stats)
    counts = np.minimum(rng.lognormal(np.log(SEEN_MEAN) - 0.7, 1.2, n_users).astype(np.int64) + 1, 2000)
    user_col = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), counts)
    ratings = pl.DataFrame({
        "user_id": user_col,
        "movie_id": rng.integers(1, N_MOVIES + 1, len(user_col)).astype(np.int32),
        "rating": (rng.integers(1, 11, len(user_col)) / 2).astype(np.float32),
        # distinct timestamps per row keep the (user, movie, rated_at) key unique
        "rated_at": pl.Series(np.arange(len(user_col), dtype=np.int64) * 1_000_000).cast(pl.Datetime("us", "UTC")),
    })
    movies = pl.DataFrame({"movie_id": np.arange(1, N_MOVIES + 1, dtype=np.int32),
                           "title": [f"Movie {i}" for i in range(1, N_MOVIES + 1)],
                           "year": rng.integers(1920, 2024, N_MOVIES).astype(np.int32),
                           "genres": pl.Series([["Drama"]] * N_MOVIES, dtype=pl.List(pl.String))})
    with connect(url) as conn, conn.transaction():
        conn.execute("TRUNCATE movielens.ratings, movielens.movies")
    with adbc_connect(url) as conn:
        bulk.ingest(conn, "movielens", "movies", movies)
        bulk.ingest(conn, "movielens", "ratings", ratings)
        conn.commit()
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE movielens.ratings")
    model = two_tower.build_model(len(ucols), len(mcols), user_layers=TOWER, movie_layers=TOWER, embedding=DIMS)
    version = registry.new_version()
    folder = registry.version_dir(version)
    folder.mkdir(parents=True)
    model.save(folder / registry.MODEL_FILE)
    feature_io.save_stats(stats, folder)
    registry.register_candidate(url, version, folder, {}, None, None)
    registry.promote(url, version)
    matrix = l2_normalize(rng.standard_normal((N_MOVIES, DIMS)).astype(np.float32))
    store = embeddings.EmbeddingStore.build(version, movies_f["movie_id"].to_numpy(), matrix)
    npy = embeddings.write_npy(embeddings.npy_dir_for(folder), store)
    embeddings.write_db(url, store, npy, None)
    return version


def postgres_server() -> str:
    """A private embedded server under $BENCH_SERVING_HOME (or a new temp home), migrated."""
    import tempfile

    from movierec_assets.db.embedded import EmbeddedPostgres
    from movierec_assets.db.migrations import apply_migrations

    home = os.environ.get("BENCH_SERVING_HOME") or tempfile.mkdtemp(prefix="bench-serving-")
    os.chmod(home, 0o755)
    os.environ["MOVIEREC_HOME"] = home
    os.environ.pop("MOVIEREC_DATABASE_URL", None)
    url = EmbeddedPostgres().ensure_running()
    apply_migrations(url)
    os.environ["MOVIEREC_DATABASE_URL"] = url
    return url


def percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.array(samples) * 1e3
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean()), "n": len(samples)}


def bench_in_process(n_users: int, requests: int, url: str | None) -> dict:
    from movierec_assets.serving.recommender import Recommender, from_database

    if url:
        rec = from_database(url, reload_every=3600)
        users = rec.users
    else:
        loader, users, _ = build_world(n_users)
        rec = Recommender(loader, users, reload_every=3600)
    state = rec.state
    rng = np.random.default_rng(1)
    ids = rng.integers(1, n_users + 1, requests)
    for u in ids[:50]:
        rec.recommend(int(u), 10)
    full = []
    for u in ids:
        t = time.perf_counter()
        rec.recommend(int(u), 10)
        full.append(time.perf_counter() - t)
    ceiling = []
    queries = rng.standard_normal((requests, DIMS)).astype(np.float32)
    m = state.store.matrix
    for q in queries:
        t = time.perf_counter()
        s = m @ q
        np.argpartition(s, len(s) - 10)[-10:]
        ceiling.append(time.perf_counter() - t)
    tower = []
    row = users.lookup(1).features
    for _ in range(requests):
        t = time.perf_counter()
        state.encoder.encode(state.scaler(row), 1)
        tower.append(time.perf_counter() - t)
    lookups = []
    for u in ids[:500]:
        t = time.perf_counter()
        users.lookup(int(u))
        lookups.append(time.perf_counter() - t)
    out = {"backend": "postgres" if url else "memory", "encoder": type(state.encoder).__name__,
           "recommend": percentiles(full), "ceiling_matvec_argpartition": percentiles(ceiling),
           "scale_and_tower": percentiles(tower), "user_lookup": percentiles(lookups)}
    out["ratio_p50"] = out["ceiling_matvec_argpartition"]["p50_ms"] / out["recommend"]["p50_ms"]
    return out


def bench_batch(n_users: int) -> dict:
    from movierec_assets.serving.topn import padded_transpose, seen_csr, top_n_batch

    rng = np.random.default_rng(2)
    from movierec_assets.serving.tower import l2_normalize

    emb = l2_normalize(rng.standard_normal((N_MOVIES, DIMS)).astype(np.float32))
    queries = l2_normalize(rng.standard_normal((n_users, DIMS)).astype(np.float32))
    counts = np.minimum(rng.lognormal(np.log(SEEN_MEAN) - 0.7, 1.2, n_users).astype(np.int64) + 1, N_MOVIES)
    user_rows = np.repeat(np.arange(n_users), counts)
    seen = seen_csr(user_rows, rng.integers(0, N_MOVIES, len(user_rows)), n_users)
    t = time.perf_counter()
    rows, _ = top_n_batch(emb, queries, 10, seen, block=256, threads=2)
    total = time.perf_counter() - t
    assert (rows >= 0).all()
    et = padded_transpose(emb)
    t = time.perf_counter()
    for start in range(0, n_users, 256):
        queries[start : start + 256] @ et
    matmul = time.perf_counter() - t
    return {"users": n_users, "seconds": total, "users_per_second": n_users / total,
            "ceiling_bare_matmul_seconds": matmul, "ratio": matmul / total,
            "ratings_masked": int(len(user_rows))}


# -- HTTP -----------------------------------------------------------------------------------------
def make_app():  # type: ignore[no-untyped-def]
    """uvicorn --factory entry point: the API over an in-memory Recommender at ml-32m size."""
    from movierec_assets.serving.api import create_app
    from movierec_assets.serving.recommender import Recommender

    if os.environ.get("BENCH_SERVING_BACKEND") == "postgres":
        from movierec_assets.serving.recommender import from_database

        url = os.environ["MOVIEREC_DATABASE_URL"]
        return create_app(lambda: from_database(url, reload_every=3600))
    n_users = int(os.environ.get("BENCH_SERVING_USERS", "200000"))
    loader, users, _ = build_world(n_users)
    return create_app(lambda: Recommender(loader, users, reload_every=3600))


async def _load(base: str, clients: int, seconds: float, rate: float | None, n_users: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(worker: int) -> None:
            rng = np.random.default_rng(worker)
            interval = clients / rate if rate else 0.0
            next_at = time.perf_counter() + rng.random() * interval
            while True:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval
                start = time.perf_counter()
                if start >= stop_at:
                    return
                try:
                    r = await client.get(f"/users/{int(rng.integers(1, n_users + 1))}/recommendations?n=10")
                    if r.status_code != 200:
                        errors.append(str(r.status_code))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - start)

        t = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(clients)))
        elapsed = time.perf_counter() - t
    return {**percentiles(latencies), "errors": len(errors), "first_errors": errors[:3],
            "requests_per_second": len(latencies) / elapsed, "clients": clients, "target_rate": rate}


def _load_process(base: str, clients: int, seconds: float, rate: float | None, n_users: int, q: mp.Queue) -> None:
    q.put(asyncio.run(_load(base, clients, seconds, rate, n_users)))


def bench_http(n_users: int, seconds: float, rates: list[float | None], backend: str) -> dict:
    import httpx

    from movierec_assets_tests.serving.helpers import free_port

    port = free_port()
    env = {**os.environ, "BENCH_SERVING_USERS": str(n_users), "BENCH_SERVING_BACKEND": backend}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.bench_serving:make_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=Path(__file__).resolve().parents[1],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.5)
        runs = []
        for rate in rates:
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            p = ctx.Process(target=_load_process, args=(base, 50, seconds, rate, n_users, q))
            p.start()
            runs.append(q.get())
            p.join()
        return {"backend": backend, "runs": runs}
    finally:
        server.terminate()
        server.wait(30)


def table(results: dict) -> str:
    ip, b = results["in_process"], results["batch"]
    lines = [
        f"{'measure':<52} {'p50 ms':>8} {'p99 ms':>8} {'target':>16}",
        f"{'in-process recommend (tower + mask + top10)':<52} {ip['recommend']['p50_ms']:8.3f} "
        f"{ip['recommend']['p99_ms']:8.3f} {'p50<=2 p99<=10':>16}",
        f"{'  ceiling: bare E@u + argpartition':<52} {ip['ceiling_matvec_argpartition']['p50_ms']:8.3f} "
        f"{ip['ceiling_matvec_argpartition']['p99_ms']:8.3f} {'ratio':>10} {ip['ratio_p50']:5.2f}",
        f"{'  part: scale + user tower (' + ip['encoder'] + ')':<52} {ip['scale_and_tower']['p50_ms']:8.3f} "
        f"{ip['scale_and_tower']['p99_ms']:8.3f}",
        f"{'  part: user lookup (' + ip['backend'] + ')':<52} {ip['user_lookup']['p50_ms']:8.3f} "
        f"{ip['user_lookup']['p99_ms']:8.3f}",
    ]
    for run in results.get("http", {}).get("runs", []):
        mode = "closed loop" if not run["target_rate"] else f"{run['target_rate']:.0f} req/s"
        label = f"HTTP 50 clients, {mode}"
        lines.append(f"{label:<52} {run['p50_ms']:8.3f} {run['p99_ms']:8.3f} {'p99<=20, 0 err':>16}"
                     f"  ({run['requests_per_second']:.0f} req/s, {run['errors']} errors)")
    lines.append(f"batch top10 for {b['users']} users: {b['seconds']:.1f} s (target <= 120 s); bare matmul "
                 f"{b['ceiling_bare_matmul_seconds']:.1f} s, ratio {b['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="closed,100,200,300", help="comma list: 'closed' or req/s")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: inproc,http,batch")
    parser.add_argument("--backend", choices=["postgres", "memory"], default="postgres",
                        help="user lookups from a real PostgreSQL (default) or from memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rates = [None if r == "closed" else float(r) for r in args.rates.split(",")]
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "numpy": np.__version__, "load_avg_start": os.getloadavg()},
                     "movies": N_MOVIES, "dims": DIMS, "users": args.users}
    url = None
    if args.backend == "postgres":
        url = postgres_server()
        t = time.perf_counter()
        results["model_version"] = build_postgres(url, args.users)
        results["setup_seconds"] = time.perf_counter() - t
    if "inproc" not in skip:
        results["in_process"] = bench_in_process(args.users, args.requests, url)
    if "batch" not in skip:
        results["batch"] = bench_batch(args.users)
    if "http" not in skip:
        results["http"] = bench_http(args.users, args.http_seconds, rates, args.backend)
    results["machine"]["load_avg_end"] = os.getloadavg()
    if url and not os.environ.get("BENCH_SERVING_HOME"):
        from movierec_assets.db.embedded import EmbeddedPostgres

        EmbeddedPostgres().stop()
        shutil.rmtree(os.environ["MOVIEREC_HOME"], ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    if {"in_process", "batch"} <= results.keys():
        print(table(results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
