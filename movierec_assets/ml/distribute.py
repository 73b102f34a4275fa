"""The tf.distribute strategy training runs under, chosen by configuration.

`MOVIEREC_TRAIN_STRATEGY`:
  - `default` (or unset): TensorFlow's default strategy (one process, all local cores);
  - `mirrored`: `MirroredStrategy` over this machine's devices;
  - `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`
    (`{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}`), as
    set for each pod by a Kubernetes job or the TF operator. Every worker runs the same training
    code; each reads its own share of the batches (data auto-sharding) and gradients are
    all-reduced, so the model stays identical on every worker. Only the chief (worker 0) writes
    to the shared run folder; the others checkpoint into their own subfolder.

TensorFlow is imported inside the functions: definitions must load without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STRATEGY_ENV = "MOVIEREC_TRAIN_STRATEGY"
STRATEGIES = ("default", "mirrored", "multi_worker")


def strategy_name(env: Mapping[str, str] | None = None) -> str:
    """The configured strategy name; raises ValueError naming the variable on a bad value."""
    env = os.environ if env is None else env
    name = (env.get(STRATEGY_ENV) or "default").strip().lower().replace("-", "_")
    if name not in STRATEGIES:
        raise ValueError(f"{STRATEGY_ENV}={env.get(STRATEGY_ENV)!r}: expected one of {', '.join(STRATEGIES)}")
    return name


def cluster_spec(env: Mapping[str, str] | None = None) -> tuple[list[str], int]:
    """(worker addresses, this task's index) from TF_CONFIG; ValueError when missing or malformed."""
    env = os.environ if env is None else env
    raw = env.get("TF_CONFIG")
    if not raw:
        raise ValueError(f"{STRATEGY_ENV}=multi_worker needs TF_CONFIG with the cluster's workers")
    try:
        config = json.loads(raw)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG is not a valid cluster description: {exc}") from None
    if task.get("type") not in ("worker", "chief") or not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG task {task!r} is not one of the {len(workers)} workers")
    return workers, index


def strategy_from_env(env: Mapping[str, str] | None = None) -> Any:
    """The tf.distribute.Strategy the configuration asks for."""
    import tensorflow as tf  # TensorFlow: only when called, never at import

    name = strategy_name(env)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        cluster_spec(env)  # fail with a clear message before TensorFlow reads TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: Any) -> bool:
    """True on the worker that owns shared outputs (always, outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return True if resolver is None else resolver_is_chief(resolver)


def resolver_is_chief(resolver: Any) -> bool:
    """The `chief` task when the cluster has one, else worker 0 (TensorFlow's convention)."""
    jobs = resolver.cluster_spec().as_dict()
    if not jobs or resolver.task_type is None:
        return True
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and int(resolver.task_id) == 0


def worker_dir(run_dir: Path, strategy: Any) -> Path:
    """Where this worker checkpoints: `run_dir` on the chief, `run_dir/worker-<i>` on the others."""
    if is_chief(strategy):
        return run_dir
    return run_dir / f"worker-{strategy.cluster_resolver.task_id}"


def shard(dataset: Any) -> Any:
    """Shard by batch across workers: the pipelines are built from ranges, not files."""
    import tensorflow as tf  # TensorFlow: only when called, never at import

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def keras_fit_workaround(model: Any, strategy: Any) -> None:
    """Let a model built under MultiWorkerMirroredStrategy `fit` on 2+ workers (Keras 3.15).

    Two Keras 3 TF-trainer bugs (keras-team/keras#20329, #20585) stop MultiWorkerMirroredStrategy:
    `fit` first all-reduces the first (dict) batch with `strategy.reduce`, which
    CollectiveAllReduceStrategy cannot do for nested structures, and each step's scalar logs are
    reduced with `reduce("MEAN", axis=0)`, which fails on scalars. So: the model's stored strategy
    is unbound (skips the first step; `fit` then takes the strategy from the enclosing
    `strategy.scope()`, so it must be called inside it), and the step logs are returned as
    1-element vectors (the mean over workers of identical values: metric variables are summed
    across workers on update, so every worker holds the global loss; test_distribute checks it).
    """
    import tensorflow as tf  # TensorFlow: only when called, never at import

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    model._distribute_strategy = None  # noqa: SLF001 -- see the docstring
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_logs(data: Any, step: Any = step) -> Any:
            return {k: tf.reshape(v, [1]) for k, v in step(data).items()}

        setattr(model, name, vector_logs)
