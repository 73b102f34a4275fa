"""The batched serving path: many users (or movies) answered by one pass over the movie matrix.

For a batch of user requests: one lookup per user (or one for all, when the source can), one
feature scaling and one tower forward for every user with features, one GEMM against all movies,
the seen mask, and an exact top N per row. A single request is a batch of one through the same
code, so batched and unbatched answers are identical (same items, order and score bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from movierec_assets.serving.served import Answer, Served
from movierec_assets.serving.state import UserSource
from movierec_assets.serving.topn import mask_columns, scores_for, top_n_columns
from movierec_assets.serving.users import lookup_many


def encode_rows(encoder: Any, x: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    """(B, d) user embeddings: one forward pass when the encoder has one, else row by row."""
    forward = getattr(encoder, "forward", None)
    if forward is None:
        return np.stack([encoder.encode(x[i : i + 1], int(u)) for i, u in enumerate(user_ids)])
    single = len(x) == 1  # pad to two rows: every row then goes through the same GEMM kernels
    out = forward(np.concatenate([x, x]), np.concatenate([user_ids, user_ids])) if single else forward(x, user_ids)
    return np.asarray(out[:1] if single else out, dtype=np.float32)


def user_scores(served: Served, queries: np.ndarray) -> np.ndarray:
    """(Mpad, B) ranking scores of every movie for each user: E @ u."""
    return scores_for(served.ep, served.movies, queries)


def popular_rows(served: Served, seen_rows: np.ndarray, n: int) -> list[int]:
    popular = served.state.catalog.popular_rows
    # Only the first n + |seen| popular movies can survive the mask.
    head = popular[: n + len(seen_rows)]
    return head[~np.isin(head, seen_rows)][:n].tolist()


def recommend_users(served: Served, users: UserSource, requests: Sequence[tuple[int, int]]) -> list[Answer]:
    """Answers for validated (user_id, n) requests, in order, all from one model version."""
    data = lookup_many(users, [u for u, _ in requests])
    # Every seen movie of the batch mapped to its row in one search; owner = request index.
    owner = np.repeat(np.arange(len(requests)), [len(s) for s in data.seen])
    seen = served.rows_of(np.concatenate(data.seen)) if len(owner) else owner
    owner, seen = owner[seen >= 0], seen[seen >= 0]
    answers: list[Answer | None] = [None] * len(requests)
    warm = [i for i, row in enumerate(data.row) if row is not None]
    for i, row in enumerate(data.row):
        if row is None:  # no features yet: popular movies (cold start)
            user_id, n = requests[i]
            answers[i] = Answer(served, True, popular_rows(served, seen[owner == i], n), None, user_id=user_id)
    if warm and data.features is not None:
        at = [data.row[i] for i in warm]
        frame = data.features if at == list(range(data.features.height)) else data.features[at]  # type: ignore[misc]
        ids = np.array([requests[i][0] for i in warm], dtype=np.int64)
        queries = encode_rows(served.state.encoder, served.state.scaler(frame), ids)
        scores = user_scores(served, queries)
        slot = np.full(len(requests), -1)
        slot[warm] = np.arange(len(warm))
        keep = slot[owner] >= 0  # masks of warm users, still in request order
        indptr = np.concatenate([[0], np.cumsum(np.bincount(slot[owner[keep]], minlength=len(warm)))])
        mask_columns(scores, (indptr, seen[keep].astype(np.int64)))
        rows, vals = top_n_columns(scores, max(requests[i][1] for i in warm))
        for k, i in enumerate(warm):
            user_id, n = requests[i]
            found = rows[k, :n] >= 0
            answers[i] = Answer(served, False, rows[k, :n][found].tolist(), vals[k, :n][found].tolist(),
                                user_id=user_id)
    return answers  # type: ignore[return-value]


def similar_movies(served: Served, requests: Sequence[tuple[int, int]]) -> list[Answer]:
    """Answers for (movie row, n) requests: highest cosine first, the movie itself excluded."""
    unit = served.state.unit
    scores = scores_for(served.unit_p, served.movies, unit[[row for row, _ in requests]])
    indptr = np.arange(len(requests) + 1, dtype=np.int64)
    mask_columns(scores, (indptr, np.array([row for row, _ in requests], dtype=np.int64)))
    rows, vals = top_n_columns(scores, max(n for _, n in requests))
    ids = served.state.store.movie_ids
    answers = []
    for k, (row, n) in enumerate(requests):
        keep = rows[k, :n] >= 0
        answers.append(Answer(served, False, rows[k, :n][keep].tolist(), vals[k, :n][keep].tolist(),
                              movie_id=int(ids[row])))
    return answers
