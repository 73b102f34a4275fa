"""Benchmark: serving at ml-32m size (87,585 movies x 64 dims, 200k users).

Run: `python -m benchmarks.bench_serving [--backend postgres|memory] [--users 200000] [--requests 2000]
[--http-seconds 10] [--repeats 3] [--rates 500,1000,2000] [--workers 1] [--skip inproc,http,batch]
[--scoring int8|float32] [--reuse-db]` (`--reuse-db` with $BENCH_SERVING_HOME keeps the database).

1. In-process top 10 for one user through `Recommender.recommend`: user lookup (one PostgreSQL
   statement: the features row and the movielens.user_rated row; or memory), feature scaling, the
   history (unknown ids skipped, newest 50 of ~SEEN_MEAN heavy-tailed ratings) and the
   history-aware user tower (numpy replay of a [256, 128] -> 64 tower plus the pooled ID
   embeddings' [128] -> 64 history net), the int8 pass over every movie, the seen mask and the
   exact float64 re-rank. Ceiling: the bare int8 pass on the same movie ranges and threads (also reported: a
   bare float32 `E @ u` + `np.argpartition`, the work the int8 pass replaces). Also
   `recommend_many` on batches of 16, 50 and 128 users (what the HTTP batcher runs).
2. HTTP: uvicorn (uvloop, httptools) serving the same Recommender in its own process, requests
   micro-batched; a lean load generator (benchmarks/serving_load.py: raw asyncio keep-alive
   HTTP/1.1, 50 connections) in another process. Closed loop (as fast as answers come) on the
   recommendations and, as the client+server ceiling, on /health, alternated `--repeats` times
   (medians reported); then open loop at fixed request rates. Zero errors required.
3. Batch: top 10 for every user with blocked matrix products (`top_n_batch`). Ceiling: the bare
   blocked matrix products alone.

Embeddings are random and L2-normalised; results go to benchmarks/results/serving.json (postgres)
or serving_memory.json (memory). Record `uptime` load with the numbers: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
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
HISTORY_LEN, ID_DIM, HISTORY_LAYERS = 50, 32, [128]  # the tested history shape (config.py: history_len 0 is its default now)
VOCAB_SHARE = 0.6  # movies with an ID row (>= 5 training ratings; ~half of ml-32m's movies)
RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
SEED = 20240601


def feature_columns() -> list[str]:
    from movierec_assets.features.compute import user_feature_columns

    return user_feature_columns()


def build_world(n_users: int, n_movies: int = N_MOVIES):  # type: ignore[no-untyped-def]
    """Random state + in-memory users shaped like ml-32m (heavy-tailed number of rated movies, with
    stars), served through a history-aware encoder (pools the newest HISTORY_LEN rated movies)."""
    from movierec_assets_tests.serving.memory import (
        MemoryBatchUserSource,
        MemoryStateLoader,
        random_history_encoder,
        random_state,
        random_tower,
    )

    rng = np.random.default_rng(SEED)
    columns = feature_columns()
    movie_ids = np.arange(1, n_movies + 1, dtype=np.int64)
    vocab = movie_ids[: int(n_movies * VOCAB_SHARE)]
    tower = random_history_encoder(rng, random_tower(rng, len(columns), TOWER, DIMS), vocab, ID_DIM,
                                   HISTORY_LAYERS, HISTORY_LEN)
    # A ranking prior like a trained model's (a scaled log-count term), so serving pays for it.
    prior = (0.1 * rng.standard_normal(n_movies)).astype(np.float32)
    state = random_state("bench", movie_ids, DIMS, tower, columns, rng, prior)
    users = MemoryBatchUserSource(columns)
    counts = np.minimum(rng.lognormal(np.log(SEEN_MEAN) - 0.7, 1.2, n_users).astype(np.int64) + 1, n_movies)
    feats = rng.standard_normal((n_users, len(columns))).astype(np.float32)
    for u in range(n_users):
        users.features[u + 1] = feats[u]
        users.seen[u + 1] = rng.integers(1, n_movies + 1, counts[u])
        users.stars[u + 1] = (rng.integers(1, 11, counts[u]) / 2).astype(np.float32)
    loader = MemoryStateLoader()
    loader.publish(state)
    return loader, users, counts


def build_postgres(url: str, n_users: int) -> str:
    """The real thing at ml-32m shape: a registered champion (the model's own [256,128]->64 towers,
    untrained), its random embeddings for 87,585 movies, random user/movie features, movies and
    ratings (~SEEN_MEAN per user, heavy-tailed) and movielens.user_rated built from them (timed).
    The champion pools histories (HISTORY_LEN). Returns (model version, setup facts)."""
    import polars as pl

    from movierec_assets import features
    from movierec_assets.db import bulk
    from movierec_assets.db.connect import adbc_connect, connect
    from movierec_assets.ingest import rated
    from movierec_assets.ml import promotion, two_tower
    from movierec_assets.ml.config import JobConfig
    from movierec_assets.ml.training_job import publish
    from movierec_assets.serving.index import embeddings
    from movierec_assets.serving.online.tower import l2_normalize

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
    t = time.perf_counter()
    rated.rebuild_all(url)  # what the history swap does in its transaction
    rebuild_seconds = time.perf_counter() - t
    with connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE movielens.ratings")
        conn.execute("VACUUM ANALYZE movielens.user_rated")
    vocab = np.arange(1, int(N_MOVIES * VOCAB_SHARE) + 1)
    model = two_tower.build_model(len(ucols), len(mcols), user_layers=TOWER, movie_layers=TOWER, embedding=DIMS,
                                  movie_vocab=vocab, history_len=HISTORY_LEN, id_dim=ID_DIM,
                                  history_layers=HISTORY_LAYERS)
    # Published and gated by the same functions as trained_model and champion_gate (the first model
    # of a fresh server is promoted; a benchmark never forces a model past the gate).
    candidate = publish(url, model, stats, {})
    version, folder = candidate.version, Path(candidate.path)
    decision = promotion.decide(url, version, JobConfig.gate_tolerance)
    if decision.decision != "promoted":
        raise SystemExit(f"the gate did not promote the benchmark model {version}: {decision.reason} "
                         "(use a fresh $BENCH_SERVING_HOME)")
    matrix = l2_normalize(rng.standard_normal((N_MOVIES, DIMS)).astype(np.float32))
    prior = (0.1 * rng.standard_normal(N_MOVIES)).astype(np.float32)  # a ranking prior, as build_world has
    store = embeddings.EmbeddingStore.build(version, movies_f["movie_id"].to_numpy(), matrix, bias=prior)
    npy = embeddings.write_npy(embeddings.npy_dir_for(folder), store)
    embeddings.write_db(url, store, npy, None)
    return version, {"ratings": len(user_col), "user_rated_rebuild_seconds": rebuild_seconds}


def existing_champion(url: str) -> str | None:
    """The champion a previous run under the same $BENCH_SERVING_HOME built, if it has embeddings."""
    from movierec_assets.db.connect import connect

    with connect(url) as conn:
        row = conn.execute("SELECT e.model_version FROM ml.embedding_sets e JOIN ml.model_versions v "
                           "ON v.version = e.model_version WHERE v.status = 'champion'").fetchone()
    return row[0] if row else None


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
    from movierec_assets.serving.online.history_tower import rated_inputs
    from movierec_assets.serving.online.recommender import Recommender, from_database
    from movierec_assets.serving.online.tower import encode_rows

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
    int8 = []
    served = rec.served
    if served.int8 is not None:  # the bare int8 pass on the same movie ranges and threads: no lookup,
        from movierec_assets.serving.index.quantized import (  # tower, mask or re-rank
            approximate,
            quantize_queries,
        )
        from movierec_assets.serving.online.candidates import in_parts

        nothing = (np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32))
        for q in queries:
            codes, scale, _ = quantize_queries(q[None, :])
            t = time.perf_counter()
            in_parts(lambda lo, hi, c=codes, s=scale: (approximate(served.int8, lo, hi, c, s), nothing)[1],
                     served.ep.shape[0], 0)
            int8.append(time.perf_counter() - t)
    tower = []
    one = users.lookup(1)
    n_hist = int(getattr(state.encoder, "history_len", 0))
    for _ in range(requests):
        t = time.perf_counter()
        x = state.scaler(one.features)
        if n_hist:  # the history from the user's rated movies (skip unknown, newest N) and its pooling
            history = rated_inputs(served.rows_of, [one.seen], [one.stars_or_zeros()], n_hist).history
            encode_rows(state.encoder, x, np.array([1]), history=history)
        else:
            encode_rows(state.encoder, x, np.array([1]))
        tower.append(time.perf_counter() - t)
    lookups = []
    for u in ids[:500]:  # what a batch of one runs: features and rated movies in one statement
        t = time.perf_counter()
        users.lookup_many([int(u)])
        lookups.append(time.perf_counter() - t)
    batched = {}
    for size in (16, 50, 128):
        times = []
        for k in range(max(5, requests // (4 * size))):
            batch = [(int(u), 10) for u in ids[(k * size) % len(ids) :][:size]]
            t = time.perf_counter()
            rec.recommend_many(batch)
            times.append(time.perf_counter() - t)
        batched[str(size)] = {**percentiles(times), "users_per_second": size / float(np.median(times))}
    out = {"backend": "postgres" if url else "memory", "encoder": type(state.encoder).__name__,
           "history_len": n_hist, "user_1_ratings": len(one.seen), "batched": batched,
           "recommend": percentiles(full), "ceiling_matvec_argpartition": percentiles(ceiling),
           "ceiling_int8_pass": percentiles(int8) if int8 else None,
           "scale_and_tower": percentiles(tower), "user_lookup": percentiles(lookups)}
    best = out["ceiling_int8_pass"] or out["ceiling_matvec_argpartition"]
    out["ratio_p50"] = best["p50_ms"] / out["recommend"]["p50_ms"]
    return out


def bench_batch(n_users: int) -> dict:
    from movierec_assets.serving.index.topn import padded_transpose, seen_csr, top_n_batch

    rng = np.random.default_rng(2)
    from movierec_assets.serving.online.tower import l2_normalize

    emb = l2_normalize(rng.standard_normal((N_MOVIES, DIMS)).astype(np.float32))
    queries = l2_normalize(rng.standard_normal((n_users, DIMS)).astype(np.float32))
    counts = np.minimum(rng.lognormal(np.log(SEEN_MEAN) - 0.7, 1.2, n_users).astype(np.int64) + 1, N_MOVIES)
    user_rows = np.repeat(np.arange(n_users), counts)
    seen = seen_csr(user_rows, rng.integers(0, N_MOVIES, len(user_rows)), n_users)
    t = time.perf_counter()
    prior = (0.1 * rng.standard_normal(N_MOVIES)).astype(np.float32)  # the model's ranking prior
    rows, _ = top_n_batch(emb, queries, 10, seen, block=256, threads=2, bias=prior)
    total = time.perf_counter() - t
    assert (rows >= 0).all()
    et = padded_transpose(emb)
    t = time.perf_counter()
    for start in range(0, n_users, 256):
        queries[start : start + 256] @ et
    matmul = time.perf_counter() - t
    encode = bench_encode_all(rng, seen)
    return {"users": n_users, "seconds": total, "users_per_second": n_users / total,
            "ceiling_bare_matmul_seconds": matmul, "ratio": matmul / total,
            "ratings_masked": int(len(user_rows)), "encode_with_history_seconds": encode,
            "seconds_with_encode": total + encode}


def bench_encode_all(rng: np.random.Generator, seen: tuple[np.ndarray, np.ndarray]) -> float:
    """Seconds to build every user's history (newest 50 of its rated movies) and run the
    history-aware user tower over all of them, as recommend_all does before the top-N pass."""
    from movierec_assets.serving.online.history_tower import rated_inputs
    from movierec_assets.serving.online.tower import encode_rows
    from movierec_assets_tests.serving.memory import random_history_encoder, random_tower

    indptr, movie_rows = seen
    n_users, columns = len(indptr) - 1, len(feature_columns())
    encoder = random_history_encoder(rng, random_tower(rng, columns, TOWER, DIMS),
                                     np.arange(1, int(N_MOVIES * VOCAB_SHARE) + 1), ID_DIM, HISTORY_LAYERS,
                                     HISTORY_LEN)
    x = rng.standard_normal((n_users, columns)).astype(np.float32)
    stars = (rng.integers(1, 11, len(movie_rows)) / 2).astype(np.float32)
    t = time.perf_counter()
    cuts = indptr[1:-1]
    inputs = rated_inputs(lambda ids: ids - 1, np.split(movie_rows + 1, cuts), np.split(stars, cuts), HISTORY_LEN)
    encode_rows(encoder, x, np.arange(n_users), history=inputs.history)
    return time.perf_counter() - t


# -- HTTP -----------------------------------------------------------------------------------------
def make_app():  # type: ignore[no-untyped-def]
    """uvicorn --factory entry point: the API over an in-memory Recommender at ml-32m size."""
    from movierec_assets.serving.index.blas import set_blas_threads
    from movierec_assets.serving.online.api import create_app
    from movierec_assets.serving.online.candidates import set_parts
    from movierec_assets.serving.online.recommender import Recommender
    from movierec_assets.serving.online.served import use_int8

    set_blas_threads(int(os.environ.get("BENCH_SERVING_BLAS_THREADS", "1")))  # as `movierec serve` does
    set_parts(int(os.environ.get("BENCH_SERVING_SCORE_THREADS", "2")))
    use_int8(os.environ.get("BENCH_SERVING_SCORING", "int8") == "int8")
    options = {"max_batch": int(os.environ.get("BENCH_SERVING_MAX_BATCH", "128")),
               "max_wait_s": float(os.environ.get("BENCH_SERVING_MAX_WAIT_MS", "1")) / 1e3,
               "batch_workers": int(os.environ.get("BENCH_SERVING_BATCH_WORKERS", "1"))}
    if os.environ.get("BENCH_SERVING_BACKEND") == "postgres":
        from movierec_assets.serving.online.recommender import from_database

        url = os.environ["MOVIEREC_DATABASE_URL"]
        return create_app(lambda: from_database(url, reload_every=3600), **options)
    n_users = int(os.environ.get("BENCH_SERVING_USERS", "200000"))
    loader, users, _ = build_world(n_users)
    return create_app(lambda: Recommender(loader, users, reload_every=3600), **options)


def start_server(n_users: int, backend: str, workers: int) -> tuple[subprocess.Popen, int]:
    import httpx

    from movierec_assets_tests.serving.helpers import free_port

    port = free_port()
    env = {**os.environ, "BENCH_SERVING_USERS": str(n_users), "BENCH_SERVING_BACKEND": backend}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.bench_serving:make_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log", "--no-proxy-headers", "--loop", "uvloop", "--http", "httptools",
         "--workers", str(workers)],
        env=env, cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:  # ok or degraded
                return server, port
        except (httpx.HTTPError, ValueError):
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise RuntimeError("benchmark server did not start")
        time.sleep(0.5)


def median_run(runs: list[dict]) -> dict:
    """The run with the median p99 (its own p50/throughput, not a mix of runs)."""
    return sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2]


def bench_http(n_users: int, seconds: float, rates: list[float | None], backend: str, repeats: int,
               workers: int) -> dict:
    """Closed loop on /health (ceiling) and on recommendations, alternated `repeats` times; then
    the open-loop rates. 50 clients from their own process (serving_load)."""
    from benchmarks.serving_load import run_load

    server, port = start_server(n_users, backend, workers)
    try:
        closed: dict[str, list[dict]] = {"health": [], "users": []}
        for _ in range(repeats):
            for kind in ("health", "users"):
                closed[kind].append({**run_load("127.0.0.1", port, kind, n_users, 50, seconds),
                                     "load_avg": os.getloadavg()[0]})
        rated = [run_load("127.0.0.1", port, "users", n_users, 50, seconds, rate) for rate in rates if rate]
    finally:
        server.terminate()
        server.wait(30)
    users, health = median_run(closed["users"]), median_run(closed["health"])
    rps = [r["requests_per_second"] for r in closed["users"]]
    ceiling = [r["requests_per_second"] for r in closed["health"]]
    server_config = {k.removeprefix("BENCH_SERVING_").lower(): v for k, v in os.environ.items()
                     if k.startswith("BENCH_SERVING_") and k != "BENCH_SERVING_HOME"}
    return {"backend": backend, "server_workers": workers, "server_config": server_config,
            "client": "raw asyncio HTTP/1.1 keep-alive (uvloop), its own process",
            "closed_loop": users, "closed_loop_ceiling_health": health,
            "closed_loop_medians": {"p50_ms": float(np.median([r["p50_ms"] for r in closed["users"]])),
                                    "p99_ms": float(np.median([r["p99_ms"] for r in closed["users"]])),
                                    "requests_per_second": float(np.median(rps)),
                                    "health_requests_per_second": float(np.median(ceiling)),
                                    "errors_total": sum(r["errors"] for r in closed["users"])},
            "ratio_throughput_vs_health": float(np.median(rps) / np.median(ceiling)),
            "closed_loop_runs": closed["users"], "health_runs": closed["health"], "open_loop": rated}


def _row(label: str, p50: float, p99: float, extra: str = "") -> str:
    return f"{label:<52} {p50:8.3f} {p99:8.3f} {extra}"


def table(results: dict) -> str:
    lines = [f"{'measure':<52} {'p50 ms':>8} {'p99 ms':>8} target / notes"]
    if ip := results.get("in_process"):
        lines += [
            _row("in-process recommend (tower + mask + top10)", ip["recommend"]["p50_ms"], ip["recommend"]["p99_ms"],
                 "p50<=2 p99<=10"),
            *([_row("  ceiling: bare int8 pass, same threads", ip["ceiling_int8_pass"]["p50_ms"],
                    ip["ceiling_int8_pass"]["p99_ms"], f"ratio {ip['ratio_p50']:.2f}")]
              if ip.get("ceiling_int8_pass") else []),
            _row("  float32 E@u + argpartition (what int8 replaces)", ip["ceiling_matvec_argpartition"]["p50_ms"],
                 ip["ceiling_matvec_argpartition"]["p99_ms"]),
            _row(f"  part: scale + user tower ({ip['encoder']})", ip["scale_and_tower"]["p50_ms"],
                 ip["scale_and_tower"]["p99_ms"]),
            _row(f"  part: user lookup ({ip['backend']})", ip["user_lookup"]["p50_ms"], ip["user_lookup"]["p99_ms"]),
        ]
        for size, run in ip.get("batched", {}).items():
            lines.append(_row(f"in-process batch of {size} (per batch)", run["p50_ms"], run["p99_ms"],
                              f"{run['users_per_second']:.0f} users/s"))
    if http := results.get("http"):
        med = http["closed_loop_medians"]
        lines.append(_row(f"HTTP 50 clients closed loop (median of {len(http['closed_loop_runs'])})", med["p50_ms"],
                          med["p99_ms"], f"p99<=20, 0 err ({med['requests_per_second']:.0f} req/s, "
                          f"{med['errors_total']} errors)"))
        h = http["closed_loop_ceiling_health"]
        lines.append(_row("  ceiling: same load on /health", h["p50_ms"], h["p99_ms"],
                          f"{med['health_requests_per_second']:.0f} req/s; "
                          f"ratio {http['ratio_throughput_vs_health']:.2f}"))
        for run in http["open_loop"]:
            lines.append(_row(f"HTTP 50 clients, open loop {run['target_rate']:.0f} req/s", run["p50_ms"],
                              run["p99_ms"], f"({run['requests_per_second']:.0f} req/s, {run['errors']} errors)"))
    if b := results.get("batch"):
        lines.append(f"batch top10 for {b['users']} users: {b['seconds']:.1f} s + {b['encode_with_history_seconds']:.1f} s "
                     f"histories and user tower (target <= 120 s); bare matmul "
                     f"{b['ceiling_bare_matmul_seconds']:.1f} s, ratio {b['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="closed-loop runs (recommendations and /health)")
    parser.add_argument("--rates", default="500,1000,2000", help="comma list of open-loop req/s")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--batch-workers", type=int, default=1, help="batches computed at once per process")
    parser.add_argument("--score-threads", type=int, default=2, help="threads (movie ranges) per batch")
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--max-wait-ms", type=float, default=1.0)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: inproc,http,batch")
    parser.add_argument("--backend", choices=["postgres", "memory"], default="postgres",
                        help="user lookups from a real PostgreSQL (default) or from memory")
    parser.add_argument("--blas-threads", type=int, default=1, help="OpenBLAS threads (the server's default: 1)")
    parser.add_argument("--scoring", choices=["int8", "float32"], default="int8",
                        help="int8 candidates + exact re-rank (the server's default) or float32 throughout")
    parser.add_argument("--reuse-db", action="store_true",
                        help="with $BENCH_SERVING_HOME: keep the database a previous run built")
    parser.add_argument("--out", type=Path, help="results file (default: serving.json, serving_memory.json)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rates = [float(r) for r in args.rates.split(",") if r and r != "closed"]
    out = args.out or (RESULTS if args.backend == "postgres" else RESULTS.with_name("serving_memory.json"))
    from movierec_assets.serving.index.blas import set_blas_threads

    set_blas_threads(args.blas_threads)
    os.environ.update(BENCH_SERVING_BLAS_THREADS=str(args.blas_threads), BENCH_SERVING_MAX_BATCH=str(args.max_batch),
                      BENCH_SERVING_MAX_WAIT_MS=str(args.max_wait_ms),
                      BENCH_SERVING_BATCH_WORKERS=str(args.batch_workers),
                      BENCH_SERVING_SCORE_THREADS=str(args.score_threads), BENCH_SERVING_SCORING=args.scoring)
    from movierec_assets.serving.online.candidates import set_parts
    from movierec_assets.serving.online.served import use_int8

    set_parts(args.score_threads)
    use_int8(args.scoring == "int8")
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "numpy": np.__version__, "load_avg_start": os.getloadavg(),
                                 "blas_threads": args.blas_threads},
                     "movies": N_MOVIES, "dims": DIMS, "users": args.users}
    url = None
    if args.backend == "postgres":
        url = postgres_server()
        t = time.perf_counter()
        version = existing_champion(url) if args.reuse_db else None
        if version is None:
            version, results["setup"] = build_postgres(url, args.users)
        results["model_version"] = version
        results["setup_seconds"] = time.perf_counter() - t
    if "inproc" not in skip:
        results["in_process"] = bench_in_process(args.users, args.requests, url)
    if "batch" not in skip:
        results["batch"] = bench_batch(args.users)
    if "http" not in skip:
        results["http"] = bench_http(args.users, args.http_seconds, rates, args.backend, args.repeats, args.workers)
    results["machine"]["load_avg_end"] = os.getloadavg()
    if url and not os.environ.get("BENCH_SERVING_HOME"):
        from movierec_assets.db.embedded import EmbeddedPostgres

        EmbeddedPostgres().stop()
        shutil.rmtree(os.environ["MOVIEREC_HOME"], ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
