"""Dynamic micro-batching: concurrent requests are coalesced into one call on a worker thread.

A request is queued with a future. When a worker is free, the batcher waits at most `max_wait_s`
for more requests to join (none when the queue already holds a full batch), then hands up to
`max_batch` of them to `run` on its thread pool; numpy releases the GIL there, so the event loop
keeps accepting requests meanwhile. Under load, everything that arrived during one batch forms the
next. `run` returns one result or exception per item, in order, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 128
MAX_WAIT_S = 0.001


class Batcher(Generic[T, R]):
    def __init__(self, run: Callable[[Sequence[T]], Sequence[R | Exception]], *, max_batch: int = MAX_BATCH,
                 max_wait_s: float = MAX_WAIT_S, workers: int = 1, name: str = "batcher") -> None:
        self.run, self.max_batch, self.max_wait_s, self.workers = run, max_batch, max_wait_s, workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = 0  # batches running on the pool
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """This item's result (or its exception), computed in some batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._busy < self.workers:
            if len(self._pending) >= self.max_batch or self.max_wait_s <= 0:
                self._dispatch()
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait_s, self._dispatch)
        return await future

    def _dispatch(self) -> None:
        """Starts batches while workers are free; called by the timer and when a batch ends."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending and self._busy < self.workers:
            batch = [(item, fut) for item, fut in self._pending[: self.max_batch] if not fut.cancelled()]
            del self._pending[: self.max_batch]
            if not batch:
                continue
            self._busy += 1
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            done = loop.run_in_executor(self._pool, self._run_safe, [item for item, _ in batch])
            done.add_done_callback(lambda f, batch=batch: self._finish(batch, f))  # type: ignore[misc]

    def _run_safe(self, items: list[T]) -> Sequence[R | Exception]:
        try:
            results = self.run(items)
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: every item reports it
            return [exc] * len(items)
        if len(results) != len(items):
            return [RuntimeError(f"batch returned {len(results)} results for {len(items)} items")] * len(items)
        return results

    def _finish(self, batch: list[tuple[T, asyncio.Future[R]]], done: asyncio.Future) -> None:
        self._busy -= 1
        results = done.result() if not done.cancelled() and done.exception() is None else None
        for k, (_, future) in enumerate(batch):
            if future.done():
                continue  # the client went away
            if results is None:
                future.set_exception(RuntimeError("batch cancelled"))
            elif isinstance(results[k], Exception):
                future.set_exception(results[k])  # type: ignore[arg-type]
            else:
                future.set_result(results[k])  # type: ignore[arg-type]
        self._dispatch()  # everything that queued meanwhile is the next batch

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
