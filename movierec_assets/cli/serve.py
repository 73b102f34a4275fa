"""`movierec serve`: the recommendation HTTP API (FastAPI on uvicorn), on 127.0.0.1 by default."""

from __future__ import annotations

import json
import os

import click
import uvicorn

from movierec_assets.db.migrations import prepare_database
from movierec_assets.serving.index.blas import set_blas_threads
from movierec_assets.serving.online.api import create_app
from movierec_assets.serving.online.candidates import set_parts
from movierec_assets.serving.online.recommender import from_database
from movierec_assets.serving.online.served import use_int8

_CONFIG_ENV = "MOVIEREC_SERVE_CONFIG"  # how worker processes receive the options


def app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory (in every worker process): the API over the champion, options from the env.

    Each worker loads the embeddings itself and polls for new champions itself, so hot reload
    works in every worker.
    """
    config = json.loads(os.environ[_CONFIG_ENV])
    use_int8(config["scoring"] == "int8")
    set_blas_threads(config["blas_threads"])  # parallelism comes from movie ranges, not BLAS threads
    set_parts(config["score_threads"])
    url, reload_every = config["url"], config["reload_every"]
    return create_app(lambda: from_database(url, reload_every), max_batch=config["max_batch"],
                      max_wait_s=config["max_wait_ms"] / 1e3, batch_workers=config["batch_workers"],
                      database_url=url, scoring=config["scoring"])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--reload-every", default=5.0, show_default=True, type=float,
              help="Seconds between checks for a new champion's embeddings.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes; each loads the embeddings and hot-reloads on its own.")
@click.option("--max-batch", default=128, show_default=True, type=click.IntRange(1, 4096),
              help="Most concurrent requests answered by one batched matrix product.")
@click.option("--max-wait-ms", default=1.0, show_default=True, type=click.FloatRange(0, 100),
              help="Longest a request waits for others to join its batch.")
@click.option("--batch-workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Batches computed at once (threads per process).")
@click.option("--score-threads", default=min(2, os.cpu_count() or 1), show_default=True,
              type=click.IntRange(1, 64), help="Threads scoring one batch (each a range of the movies).")
@click.option("--blas-threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="OpenBLAS threads per matrix product.")
@click.option("--scoring", type=click.Choice(["int8", "float32"]), default="int8", show_default=True,
              help="int8: int8 candidates re-ranked exactly in float32 (same answers, 2-5x less scoring work); "
                   "float32: every movie scored in float32.")
def serve(host: str, port: int, reload_every: float, workers: int, max_batch: int, max_wait_ms: float,
          batch_workers: int, score_threads: int, blas_threads: int, scoring: str) -> None:
    """Serve /users/{id}/recommendations, /movies/{id}/similar, /health and /docs."""
    url = prepare_database()
    os.environ[_CONFIG_ENV] = json.dumps({
        "url": url, "reload_every": reload_every, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
        "batch_workers": batch_workers, "score_threads": score_threads, "blas_threads": blas_threads,
        "scoring": scoring,
    })
    click.echo(f"movierec API on http://{host}:{port} (docs at /docs, {workers} worker(s))")
    uvicorn.run("movierec_assets.cli.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", log_level="info", access_log=False,
                proxy_headers=False)  # no client addresses are used: skip X-Forwarded-* parsing
