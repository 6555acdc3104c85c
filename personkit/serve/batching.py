"""Dynamic batching of concurrent requests: one forward pass for the people of every request
that arrived within a short wait (as Triton's dynamic batcher and Ray Serve's ``@serve.batch``
do; FastAPI has none of its own).

The first waiting request opens a batch; it closes when ``max_batch`` requests are in it or
``max_wait_ms`` has passed, and runs in a worker thread (the event loop keeps accepting
requests meanwhile). ``max_batch`` 1 runs every request alone (batching off).

Failures stay with their request: when a batch raises, each of its items is run again alone,
so only the item that fails gets the error. The queue is bounded (``max_queue``: a full one
refuses with :class:`BatcherBusy`), and if the worker task ever ends (cancelled, or a bug),
every waiting request fails with :class:`BatcherStopped` instead of waiting forever; the next
request starts a new worker. Only the standard library is used (the module is tested on the
oldest Python the package declares).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any


class BatcherStopped(RuntimeError):
    """The batcher stopped (the server is shutting down, or its worker died)."""


class BatcherBusy(RuntimeError):
    """The batcher's queue is full."""


class Batcher:
    """Collects calls of ``run(items) -> results`` (one result per item) into batches of up
    to ``max_batch``, each waiting at most ``max_wait_ms`` for more (``personkit serve``'s
    defaults: :mod:`personkit.serve.settings`)."""

    def __init__(self, run: Callable[[Sequence[Any]], list[Any]], max_batch: int,
                 max_wait_ms: float, on_batch: Callable[[int], None] | None = None,
                 max_queue: int = 1024):
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_ms >= 0, got "
                             f"{max_batch}, {max_queue} and {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self.on_batch, self.max_queue = on_batch, max_queue
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: list[asyncio.Future[Any]] = []  # the futures of the batch in progress
        self._closed = False

    async def submit(self, item: Any) -> Any:
        """``run``'s result for ``item``, computed in some batch; its exception if it raised.

        Raises:
            BatcherBusy: ``max_queue`` requests are already waiting.
            BatcherStopped: the batcher was closed, or its worker died while this waited.
        """
        if self._closed:
            raise BatcherStopped("the server is shutting down")
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue(self.max_queue)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._loop())
            self._worker.add_done_callback(self._worker_ended)
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise BatcherBusy(f"{self.max_queue} requests are waiting for the network") from None
        return await future

    async def _collect(self) -> list[tuple[Any, asyncio.Future[Any]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:  # not the builtin on 3.10 (an alias from 3.11 on)
                break
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            self._running = [future for _, future in batch]
            if self.on_batch:
                self.on_batch(len(batch))
            outcomes = await asyncio.to_thread(self._run_batch, [item for item, _ in batch])
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            self._running = []

    def _run_batch(self, items: list[Any]) -> list[tuple[bool, Any]]:
        """``(True, result)`` or ``(False, exception)`` per item; a failing batch is run again
        item by item, so one bad item fails alone."""
        try:
            results = list(self.run(items))
            if len(results) != len(items):
                raise RuntimeError(f"the batch function gave {len(results)} results for "
                                   f"{len(items)} items")
            return [(True, r) for r in results]
        except Exception as e:
            if len(items) == 1:
                return [(False, e)]
        return [self._run_batch([item])[0] for item in items]

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        """Fail every waiting request: nothing will answer them (503, not a hang)."""
        reason = "the server is shutting down" if self._closed else (
            "the network's worker stopped" + ("" if task.cancelled() or task.exception() is None
                                              else f": {task.exception()!r}"))
        self._fail_waiting(reason)

    def _fail_waiting(self, reason: str) -> None:
        waiting = list(self._running)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait()[1])
        for future in waiting:
            if not future.done():
                future.set_exception(BatcherStopped(reason))
        self._running = []

    async def close(self) -> None:
        """Stop: waiting requests fail with :class:`BatcherStopped`, new ones are refused."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._fail_waiting("the server is shutting down")
