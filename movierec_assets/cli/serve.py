"""`movierec serve`: the recommendation HTTP API (FastAPI on uvicorn), on 127.0.0.1 by default."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--reload-every", default=5.0, show_default=True, type=float,
              help="Seconds between checks for a new champion's embeddings.")
def serve(host: str, port: int, reload_every: float) -> None:
    """Serve /users/{id}/recommendations, /movies/{id}/similar, /health and /docs."""
    import uvicorn

    from movierec_assets.db.migrations import prepare_database
    from movierec_assets.serving.api import create_app
    from movierec_assets.serving.recommender import from_database

    url = prepare_database()
    app = create_app(lambda: from_database(url, reload_every))
    click.echo(f"movierec API on http://{host}:{port} (docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
