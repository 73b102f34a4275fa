"""The `celery` executor of `MOVIEREC_EXECUTOR=celery`: dagster-celery's, with the broker from
`MOVIEREC_BROKER_URL` (else the local Redis) and checks before the first step is submitted.

dagster-celery alone retries a dead broker for a while and then fails with a kombu traceback, and
with no worker listening it waits forever. Here the run fails at launch, in one line that names
`MOVIEREC_BROKER_URL`, when the broker does not answer or no worker replies to a ping.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

from movierec_assets.settings import ENV_BROKER_URL
from movierec_assets.workers.broker import BrokerError, broker_url, check_broker, redact

WORKER_PING_S = 5.0


class MovierecCeleryExecutor(CeleryExecutor):
    """Checks the broker and the workers when the run starts, then runs dagster-celery's loop."""

    def execute(self, plan_context: Any, execution_plan: Any) -> Any:
        check_broker(self.broker)
        workers = ping_workers(self.broker, WORKER_PING_S, limit=1)  # returns on the first reply
        if not workers:
            raise BrokerError(f"no Celery worker answers on the broker {redact(self.broker)} ({ENV_BROKER_URL}) "
                              f"within {WORKER_PING_S:.0f} s: start them with `movierec workers start`")
        plan_context.log.info(f"celery: worker {workers[0]} answers on {redact(self.broker)}")
        return super().execute(plan_context, execution_plan)


def ping_workers(url: str, timeout_s: float, limit: int | None = None) -> list[str]:
    """The names of the workers that answer a ping on the broker at `url` within `timeout_s`
    (returning as soon as `limit` have answered)."""
    from dagster_celery.make_app import make_app

    app = make_app({"broker": url, "backend": "rpc://"})
    try:
        replies = app.control.ping(timeout=timeout_s, limit=limit) or []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


@dg.executor(name="celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
def movierec_celery_executor(init_context: dg.InitExecutorContext) -> MovierecCeleryExecutor:
    """dagster-celery's executor; `broker` defaults to `MOVIEREC_BROKER_URL`, else the local Redis."""
    config = init_context.executor_config
    return MovierecCeleryExecutor(
        broker=config.get("broker") or broker_url(),
        backend=config.get("backend"),
        config_source=config.get("config_source"),
        include=config.get("include"),
        retries=RetryMode.from_config(config["retries"]),
    )
