"""A user gets the same movies in the same order alone and inside micro-batches of any size and
company, with either candidate pass (int8 or float32), and the same as the batch table's rule.
Ids and order are compared exactly; scores within SCORE_ATOL (no test assumes BLAS gives the same
float32 bits for different shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from movierec_assets.serving.index.topn import top_n_batch
from movierec_assets.serving.online.recommender import Recommender
from movierec_assets.serving.online.served import use_int8
from movierec_assets.serving.online.tower import encode_rows
from movierec_assets_tests.serving.memory import (
    MemoryBatchUserSource,
    MemoryStateLoader,
    random_state,
    random_tower,
)

COLUMNS = [f"f{i}" for i in range(30)]
DIMS = 64
SCORE_ATOL = 1e-6


def _world(seed: int) -> tuple[Recommender, MemoryBatchUserSource]:
    rng = np.random.default_rng(seed)
    movie_ids = np.arange(1, 20_001, dtype=np.int64) * 2
    tower = random_tower(rng, len(COLUMNS), [256, 128], DIMS)  # the served model's shape
    state = random_state("v1", movie_ids, DIMS, tower, COLUMNS, rng, rng.normal(0, 0.2, len(movie_ids)).astype(np.float32))
    state.store.matrix[5000:5100] = state.store.matrix[4999]  # exact ties: broken by movie id
    users = MemoryBatchUserSource(COLUMNS)
    for u in range(1, 151):
        users.features[u] = rng.standard_normal(len(COLUMNS)).astype(np.float32)
        users.seen[u] = rng.choice(movie_ids, int(rng.integers(0, 200)), replace=False)
    loader = MemoryStateLoader()
    loader.publish(state)
    return Recommender(loader, users), users


def _ids(answer) -> list[int]:  # type: ignore[no-untyped-def]
    return [i.movie_id for i in answer.recommendations().items]


def _scores(answer) -> list[float]:  # type: ignore[no-untyped-def]
    return [i.score for i in answer.recommendations().items]


@pytest.mark.parametrize("int8", [True, False])
def test_a_user_gets_the_same_answer_alone_and_in_batches_of_any_size(int8: bool) -> None:
    use_int8(int8)
    try:
        rec, _ = _world(3)
    finally:
        use_int8(True)
    assert rec.health()["scoring"] == ("int8" if int8 else "float32")
    rng = np.random.default_rng(4)
    for user in (1, 17, 42, 150):
        (alone,) = rec.recommend_many([(user, 25)])
        for size in (2, 3, 5, 8, 16, 33, 128):
            others = [(int(u), int(rng.integers(1, 101))) for u in rng.integers(1, 151, size - 1)]
            at = int(rng.integers(0, size))
            batch = rec.recommend_many([*others[:at], (user, 25), *others[at:]])
            assert _ids(batch[at]) == _ids(alone), (user, size)
            np.testing.assert_allclose(_scores(batch[at]), _scores(alone), rtol=0, atol=SCORE_ATOL)


def test_the_batch_table_rule_gives_the_served_answers() -> None:
    """`top_n_batch` (user_recommendations) over the same user vectors, in blocks of any size, gives
    the interactive answers: the same exact re-rank rule, ties by movie id."""
    rec, users = _world(8)
    state = rec.state
    ids = np.arange(1, 151)
    queries = encode_rows(state.encoder, state.scaler(np.stack([users.features[u] for u in ids])), ids)
    seen = [state.store.rows_of(users.seen[u]) for u in ids]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])])
    for block in (7, 64, 256):
        rows, vals = top_n_batch(state.store.matrix, queries, 10, (indptr, np.concatenate(seen)), block=block,
                                 bias=state.store.ranking_bias)
        for k in range(0, 150, 13):
            served = rec.recommend(int(ids[k]), 10)
            assert state.store.movie_ids[rows[k]].tolist() == [i.movie_id for i in served.items], (block, k)
            np.testing.assert_allclose(vals[k], [i.score for i in served.items], rtol=0, atol=SCORE_ATOL)
