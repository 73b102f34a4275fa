"""History construction for the user tower: causal, truncated, unknown ids skipped (no TensorFlow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from movierec_assets.ml.history import PAD_ID, causal_index, histories_for_users


def _rows(events: list[tuple[int, int, float, int]]) -> pl.DataFrame:
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    return pl.DataFrame({"user_id": [e[0] for e in events], "movie_id": [e[1] for e in events],
                         "rating": [e[2] for e in events], "rated_at": [t0 + timedelta(seconds=e[3]) for e in events]})


def test_causal_histories_never_see_the_event_or_later() -> None:
    # user 1 rates 10 (t=0), 20 and 30 in the same second (t=5: ties go by movie id), then 40 (t=9);
    # user 2 rates 50 (t=1), then 60 (t=2). The events arrive out of order.
    user = np.array([1, 2, 1, 1, 2, 1])
    movie = np.array([40, 60, 10, 30, 50, 20])
    rating = np.array([4.0, 2.0, 5.0, 3.0, 1.0, 4.5], np.float32)
    at = np.array([9, 2, 0, 5, 1, 5])
    idx = causal_index(user, movie, rating, at)
    h = idx.windows(np.arange(6), 2)
    expected_ids = np.array([[30, 20], [50, PAD_ID], [PAD_ID, PAD_ID], [20, 10], [PAD_ID, PAD_ID], [10, PAD_ID]])
    expected_r = np.array([[3.0, 4.5], [1.0, 0], [0, 0], [4.5, 5.0], [0, 0], [5.0, 0]], np.float32)
    np.testing.assert_array_equal(h.movie_ids, expected_ids)
    np.testing.assert_array_equal(h.ratings, expected_r)
    np.testing.assert_array_equal(h.lengths, [2, 1, 0, 2, 0, 1])
    assert h.movie_ids.dtype == np.int32 and h.ratings.dtype == np.float32


def test_histories_keep_the_newest_n_and_skip_unknown_ids() -> None:
    rows = _rows([(7, 1, 3.0, 0), (7, 2, 4.0, 1), (7, 3, 5.0, 2), (7, 999, 1.0, 3), (7, 4, 2.0, 4),
                  (8, 5, 3.5, 0), (9, 6, 1.0, 0)])
    h = histories_for_users(rows, np.array([8, 7, 42]), 3, known_movie_ids=np.array([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(h.movie_ids, [[5, PAD_ID, PAD_ID], [4, 3, 2], [PAD_ID, PAD_ID, PAD_ID]])
    np.testing.assert_array_equal(h.ratings, [[3.5, 0, 0], [2.0, 5.0, 4.0], [0, 0, 0]])
    np.testing.assert_array_equal(h.lengths, [1, 3, 0])
    assert h.skipped_unknown == 1  # movie 999
    assert h.truncated_users == 1  # user 7 had 4 known ratings
    assert set(h.inputs()) == {"history_movie_ids", "history_ratings"}


def test_no_rows_gives_padding_only() -> None:
    h = histories_for_users(_rows([(1, 1, 3.0, 0)]).clear(), np.array([1, 2]), 4)
    assert (h.movie_ids == PAD_ID).all() and (h.lengths == 0).all() and h.movie_ids.shape == (2, 4)
