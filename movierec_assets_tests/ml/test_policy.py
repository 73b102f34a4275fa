"""`choose_policy`: every branch, on hand-made champions (pure: no database, no TensorFlow)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import pytest

from movierec_assets.ml.config import TrainConfig
from movierec_assets.ml.policy import (
    FULL_RETRAIN_CRON,
    ChampionInfo,
    choose_policy,
    config_differences,
    latest_full_tick,
)

CONFIG = asdict(TrainConfig())
# Wednesday 2026-12-02 12:00 UTC; the latest weekly tick before it is Sunday 2026-11-29 00:00.
WEDNESDAY = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)


def _champion(policy: str = "full", last_full_at: datetime = datetime(2026, 11, 30, tzinfo=UTC),
              config: dict | None = None, features: str = "fs1") -> ChampionInfo:
    return ChampionInfo("v1", policy, CONFIG if config is None else config, features, last_full_at)


def test_the_cron_and_the_tick_are_the_same_sunday_midnight() -> None:
    assert FULL_RETRAIN_CRON == "0 0 * * 0"
    assert latest_full_tick(WEDNESDAY) == SUNDAY
    assert latest_full_tick(SUNDAY) == SUNDAY  # at the tick itself
    assert latest_full_tick(datetime(2026, 11, 28, 23, 59, tzinfo=UTC)) == datetime(2026, 11, 22, tzinfo=UTC)


def test_explicit_none_and_full_are_applied_as_asked() -> None:
    assert choose_policy(_champion(), "none", WEDNESDAY, CONFIG, "fs1", 50)[0] == "none"
    assert choose_policy(None, "none", WEDNESDAY, CONFIG, "fs1", 50)[0] == "none"
    assert choose_policy(_champion(), "full", WEDNESDAY, CONFIG, "fs1", 0) == ("full", "retrain_policy=full")


def test_auto_warms_on_new_days_within_the_week() -> None:
    assert choose_policy(_champion(), "auto", WEDNESDAY, CONFIG, "fs1", 120) == (
        "warm", "120 new ratings since champion v1's data_end")
    assert choose_policy(_champion("warm"), "warm", WEDNESDAY, CONFIG, "fs1", 1)[0] == "warm"


def test_no_new_ratings_trains_nothing_under_warm_and_auto() -> None:
    for requested in ("warm", "auto"):
        policy, reason = choose_policy(_champion(), requested, WEDNESDAY, CONFIG, "fs1", 0)
        assert policy == "none" and "no new ratings since champion v1's data_end" in reason


def test_auto_goes_full_once_the_weekly_tick_passed_the_last_full_model() -> None:
    old = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # Saturday: before Sunday's tick
    policy, reason = choose_policy(_champion("warm", old), "auto", WEDNESDAY, CONFIG, "fs1", 10)
    assert policy == "full" and reason.startswith("weekly full retrain") and "2026-11-29T00:00:00+00:00" in reason
    # The cadence also consolidates a warm chain with no new days; a full champion with none stays.
    assert choose_policy(_champion("warm", old), "auto", WEDNESDAY, CONFIG, "fs1", 0)[0] == "full"
    assert choose_policy(_champion("full", old), "auto", WEDNESDAY, CONFIG, "fs1", 0)[0] == "none"
    # An explicit warm ignores the cadence.
    assert choose_policy(_champion("warm", old), "warm", WEDNESDAY, CONFIG, "fs1", 10)[0] == "warm"


def test_no_champion_another_feature_set_or_architecture_means_full() -> None:
    assert choose_policy(None, "auto", WEDNESDAY, CONFIG, "fs1", 10) == ("full", "no champion to warm-start from")
    assert choose_policy(None, "warm", WEDNESDAY, CONFIG, "fs1", 10) == (
        "full", "warm falls back to full: no champion to warm-start from")
    policy, reason = choose_policy(_champion(features="fs0"), "warm", WEDNESDAY, CONFIG, "fs1", 10)
    assert policy == "full" and reason == "warm falls back to full: feature set fs1 differs from the champion's fs0"
    other = CONFIG | {"user_layers": [32], "embedding": 16}
    policy, reason = choose_policy(_champion(config=other), "warm", WEDNESDAY, CONFIG, "fs1", 10)
    assert policy == "full"
    assert reason == ("warm falls back to full: architecture differs from champion v1's "
                      "(embedding: 16 -> 64; user_layers: [32] -> [256, 128])")


def test_training_only_settings_are_not_an_architecture_change() -> None:
    assert config_differences(CONFIG, CONFIG | {"epochs": 1, "learning_rate": 0.5, "seed": 3}) == []
    # A setting missing from an older champion's config takes its default: the same model.
    assert config_differences({k: v for k, v in CONFIG.items() if k != "id_dim"}, CONFIG) == []
    assert config_differences(CONFIG | {"gone": 1}, CONFIG) == ["unknown settings ['gone']"]
    assert config_differences({}, CONFIG) == ["the champion saved no config"]


def test_an_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="retrain_policy 'sometimes'"):
        choose_policy(None, "sometimes", WEDNESDAY, CONFIG, "fs1", 1)
