"""Training throughput: our index-gather tf.data pipeline vs the compute-bound ceiling, same run.

Ratings arrays are sized like ml-32m's training history (default 20M ratings, 200k users, 87,585
movies, the real feature widths). The ceiling is `model.fit` on k in-memory batches of random
tensors of the same shapes, dtypes and batch size, cycled (no input work at all). Both use the same
model config. Steady state = median of per-window rates after a warm-up window.

    python -m benchmarks.bench_train [--ratings 20000000] [--batch 8192] [--steps 150] [--full-epoch]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
USER_FEATURES, MOVIE_FEATURES = 45, 27  # len(user_feature_columns()), len(movie_feature_columns())


class PeakRss:
    """Samples this process's RSS every 50 ms on a thread; `.peak` in bytes."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def make_arrays(n: int, n_users: int, n_movies: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from movierec_assets.ml.pipeline import FeatureMatrices, RatingArrays

    rng = np.random.default_rng(seed)
    features = FeatureMatrices(
        user_ids=np.arange(1, n_users + 1, dtype=np.int32),
        user_matrix=rng.standard_normal((n_users, USER_FEATURES), dtype=np.float32),
        movie_ids=np.arange(1, n_movies + 1, dtype=np.int32),
        movie_matrix=rng.standard_normal((n_movies, MOVIE_FEATURES), dtype=np.float32),
    )
    ratings = RatingArrays(
        user_idx=rng.integers(0, n_users, n, dtype=np.int32),
        movie_idx=np.minimum(rng.zipf(1.3, n) - 1, n_movies - 1).astype(np.int32),
        rating=(rng.integers(1, 11, n) / 2).astype(np.float32),
        rated_at=np.arange(n, dtype=np.int64),
    )
    return features, ratings


class WindowRates:
    """keras callback: examples/s over windows of `every` batches."""

    def __new__(cls, batch_size: int, every: int):  # type: ignore[no-untyped-def]
        import keras

        class _Cb(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.rates: list[float] = []
                self._t = 0.0

            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                if batch % every == 0:
                    now = time.perf_counter()
                    if self._t:
                        self.rates.append(every * batch_size / (now - self._t))
                    self._t = now

        return _Cb()


def random_batches(tf, batch: int, n_users: int, n_movies: int, logq: np.ndarray, k: int = 8,  # type: ignore[no-untyped-def]
                   negatives: int = 0):
    """The ceiling's input: k random batches of our exact shapes/dtypes, held in memory, cycled;
    with `negatives` uniform negatives per batch, as the training pipeline adds them."""
    rng = np.random.default_rng(1)
    movie = rng.integers(0, n_movies, (k, batch)).astype(np.int32)
    rating = (rng.integers(1, 11, (k, batch)) / 2).astype(np.float32)
    x = {
        "user_features": rng.standard_normal((k, batch, USER_FEATURES), dtype=np.float32),
        "movie_features": rng.standard_normal((k, batch, MOVIE_FEATURES), dtype=np.float32),
        "user_id": rng.integers(0, n_users, (k, batch)).astype(np.int32),
        "movie_id": movie,
        "train_rating": rating,
        "train_movie_logq": logq[movie],
    }
    if negatives:
        x["train_neg_features"] = rng.standard_normal((k, negatives, MOVIE_FEATURES), dtype=np.float32)
        x["train_neg_ids"] = rng.integers(0, n_movies, (k, negatives)).astype(np.int32)
        x["train_neg_logq"] = np.full((k, negatives), np.log(negatives / n_movies), np.float32)
    return tf.data.Dataset.from_tensor_slices((x, rating)).cache().repeat()


def fit_rate(model, dataset, steps: int, batch_size: int, window: int) -> float:  # type: ignore[no-untyped-def]
    cb = WindowRates(batch_size, window)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[cb], verbose=0)
    rates = cb.rates[1:] or cb.rates  # first window includes tracing/warm-up
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratings", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--movies", type=int, default=87_585)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--full-epoch", action="store_true", help="also time one full epoch over --ratings")
    args = ap.parse_args()

    rss = PeakRss()
    import tensorflow as tf

    from movierec_assets.ml.pipeline import make_dataset, movie_log_frequency
    from movierec_assets.ml.train import TrainConfig
    from movierec_assets.ml.two_tower import build_model

    cfg = TrainConfig(batch_size=args.batch)  # the production defaults, bigger batches
    t0 = time.perf_counter()
    features, ratings = make_arrays(args.ratings, args.users, args.movies)
    build_s = time.perf_counter() - t0
    logq = movie_log_frequency(ratings, args.movies)
    ours, steps_per_epoch = make_dataset(ratings, features, args.batch, True, 0, 0, logq)
    ceiling = random_batches(tf, args.batch, args.users, args.movies, logq)

    rows = []
    for rep in range(args.repeats):
        for name, ds in (("ceiling (in-memory tensors)", ceiling), ("pipeline (gather by index)", ours)):
            model = build_model(USER_FEATURES, MOVIE_FEATURES, cfg.learning_rate, **cfg.model_kwargs())
            rate = fit_rate(model, ds, args.steps, args.batch, args.window)
            rows.append({"repeat": rep, "name": name, "examples_per_s": rate})
            print(f"  {name:30s} repeat {rep}: {rate:,.0f} examples/s", flush=True)
    ceil = statistics.median(r["examples_per_s"] for r in rows if r["name"].startswith("ceiling"))
    pipe = statistics.median(r["examples_per_s"] for r in rows if r["name"].startswith("pipeline"))
    full_epoch_s = None
    if args.full_epoch:
        model = build_model(USER_FEATURES, MOVIE_FEATURES, cfg.learning_rate, **cfg.model_kwargs())
        t0 = time.perf_counter()
        model.fit(ours, epochs=1, steps_per_epoch=steps_per_epoch, verbose=0)
        full_epoch_s = time.perf_counter() - t0
    peak = rss.stop()
    result = {
        "ratings": args.ratings, "users": args.users, "movies": args.movies, "batch_size": args.batch,
        "steps_measured": args.steps, "repeats": args.repeats, "model": cfg.model_kwargs(),
        "ceiling_examples_per_s": ceil, "pipeline_examples_per_s": pipe, "ratio": pipe / ceil,
        "epoch_seconds_extrapolated": args.ratings / pipe, "epoch_seconds_measured": full_epoch_s,
        "array_build_seconds": build_s, "peak_rss_gb": peak / 1e9, "runs": rows,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "targets": {"ratio": 0.8, "epoch_seconds": 300, "peak_rss_gb": 6.0},
    }
    print("\n| metric | value | target |\n|---|---|---|")
    print(f"| ceiling examples/s (median) | {ceil:,.0f} | |")
    print(f"| pipeline examples/s (median) | {pipe:,.0f} | |")
    print(f"| ratio | {pipe / ceil:.2f} | >= 0.8 |")
    print(f"| epoch over {args.ratings:,} ratings (extrapolated) | {args.ratings / pipe:,.0f} s | <= 300 s |")
    if full_epoch_s is not None:
        print(f"| epoch over {args.ratings:,} ratings (measured) | {full_epoch_s:,.0f} s | <= 300 s |")
    print(f"| peak RSS | {peak / 1e9:.2f} GB | <= 6 GB |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
