"""`movierec recommend USER_ID [-n 10] [--json]`: the champion's top N for one user."""

from __future__ import annotations

import json
import os

import click

from movierec_assets.db.migrations import prepare_database
from movierec_assets.serving.online.recommender import InvalidRequest, NotReady, from_database

# Inference loads the champion's towers through Keras once. TensorFlow's oneDNN notice (and the
# absl preamble it triggers) would land on stderr of every call; TF_CPP_MIN_LOG_LEVEL does not
# silence it in TF 2.21. Numerics differ from training only by float round-off. Overridable.
QUIET_TF = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _table(result: dict) -> str:
    head = f"user {result['user_id']}  model {result['model_version']}"
    if result["cold_start"]:
        head += "  (cold start: popular movies, no features for this user yet)"
    lines = [head, f"{'#':>3}  {'movie':>7}  {'score':>7}  {'year':>4}  title  [genres]"]
    for rank, item in enumerate(result["items"], 1):
        score = "-" if item["score"] is None else f"{item['score']:.4f}"
        year = item["year"] if item["year"] is not None else ""
        lines.append(f"{rank:>3}  {item['movie_id']:>7}  {score:>7}  {year!s:>4}  {item['title']}"
                     f"  [{'|'.join(item['genres'])}]")
    return "\n".join(lines)


@click.command()
@click.argument("user_id", type=int)
@click.option("-n", "n", type=int, default=10, show_default=True, help="How many movies (1-100).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def recommend(user_id: int, n: int, as_json: bool) -> None:
    """Top N unseen movies for USER_ID from the champion model."""
    for key, value in QUIET_TF.items():
        os.environ.setdefault(key, value)
    url = prepare_database()
    try:
        result = from_database(url).recommend(user_id, n).to_dict()
    except (InvalidRequest, NotReady) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2) if as_json else _table(result))
