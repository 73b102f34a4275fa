"""Scale-out on one machine or many: the Celery broker (a local Redis, like the embedded database)
and the `dagster-celery` worker processes that run the asset graph's steps.

- `broker`: `MOVIEREC_BROKER_URL`, else the local Redis under `$MOVIEREC_HOME/broker/`;
- `pool`: `movierec workers start|stop|status` (N worker processes, PIDs and logs under
  `$MOVIEREC_HOME/workers/`);
- `executor`: the `celery` executor that `MOVIEREC_EXECUTOR=celery` attaches to every job; it checks
  the broker and the workers before it submits a step, so a dead broker is a clear error, not a hang.
"""
