"""Which retraining policy a `trained_model` run applies: one pure function, `choose_policy`.

- `none`: the features refresh, the model stays (no new version).
- `warm`: fine-tune the champion on the ratings after its `data_end` plus a sample of older ones.
- `full`: train from scratch on every rating.
- `auto` (the default): `warm` on each batch of new days, `full` once a week (the first run after
  the `FULL_RETRAIN_CRON` tick, which also triggers `trained_model` on its own), and `full`
  whenever a warm start is impossible or meaningless: no champion, another feature-set version,
  another architecture.

"Never twice": `warm` (and `auto`) with no rating after the champion's `data_end` trains nothing.
No TensorFlow here (the Dagster definitions import this module).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from movierec_assets.ml.config import RETRAIN_POLICIES, ModelConfig, TrainConfig

MODEL_FIELDS = frozenset(f.name for f in fields(ModelConfig))

# The weekly full retrain: Sunday 00:00 UTC. The cron string (for `AutomationCondition.on_cron`)
# is derived from these two numbers, so the automation and `choose_policy` cannot disagree.
FULL_RETRAIN_WEEKDAY = 6  # Python's weekday(): Monday 0 ... Sunday 6
FULL_RETRAIN_HOUR_UTC = 0
FULL_RETRAIN_CRON = f"0 {FULL_RETRAIN_HOUR_UTC} * * {(FULL_RETRAIN_WEEKDAY + 1) % 7}"  # cron: Sunday = 0


@dataclass(frozen=True)
class ChampionInfo:
    """What the policy needs to know about the serving model."""

    version: str
    policy: str  # the policy that made it: full | warm
    model_config: dict[str, Any]  # its ModelConfig, as saved in its metrics' "config"
    feature_version: str | None
    last_full_at: datetime  # created_at of the full model its lineage starts from


def latest_full_tick(now: datetime) -> datetime:
    """The latest weekly full-retrain tick at or before `now` (an aware UTC datetime)."""
    tick = now.replace(hour=FULL_RETRAIN_HOUR_UTC, minute=0, second=0, microsecond=0)
    tick -= timedelta(days=(now.weekday() - FULL_RETRAIN_WEEKDAY) % 7)
    return tick if tick <= now else tick - timedelta(days=7)


def config_differences(champion: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """The ModelConfig fields that differ between two saved training configs (missing fields take
    their defaults). A field this code no longer knows is a difference: the model cannot be rebuilt."""
    if not champion:
        return ["the champion saved no config"]
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(champion) - known)
    if unknown:
        return [f"unknown settings {unknown}"]
    a, b = (ModelConfig.from_dict({k: v for k, v in c.items() if k in MODEL_FIELDS}).as_dict()
            for c in (champion, requested))
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a) if a[k] != b[k]]


def choose_policy(champion: ChampionInfo | None, requested: str, now: datetime, model_config: dict[str, Any],
                  feature_version: str, new_ratings: int) -> tuple[str, str]:
    """(policy applied, why): `requested` is the run config's `retrain_policy`; `new_ratings` is
    the number of ratings after the champion's data_end (all ratings when there is no champion)."""
    if requested not in RETRAIN_POLICIES:
        raise ValueError(f"retrain_policy {requested!r}: expected one of {', '.join(RETRAIN_POLICIES)}")
    if requested == "none":
        return "none", "retrain_policy=none: the features refresh, the model stays"
    if requested == "full":
        return "full", "retrain_policy=full"
    fallback = "" if requested == "auto" else "warm falls back to full: "
    if champion is None:
        return "full", fallback + "no champion to warm-start from"
    if champion.feature_version != feature_version:
        return "full", (fallback + f"feature set {feature_version} differs from the champion's "
                         f"{champion.feature_version}")
    diff = config_differences(champion.model_config, model_config)
    if diff:
        return "full", fallback + f"architecture differs from champion {champion.version}'s ({'; '.join(diff)})"
    if requested == "auto" and champion.last_full_at < latest_full_tick(now) and (
            new_ratings > 0 or champion.policy == "warm"):
        return "full", (f"weekly full retrain: the last full model ({champion.last_full_at.isoformat()}) "
                        f"predates the {latest_full_tick(now).isoformat()} tick")
    if new_ratings <= 0:
        return "none", f"no new ratings since champion {champion.version}'s data_end: nothing to train on"
    return "warm", f"{new_ratings} new ratings since champion {champion.version}'s data_end"
