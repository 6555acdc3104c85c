"""Dynamic batching of concurrent requests: one forward pass for the people of every request
that arrived within a short wait (as Triton's dynamic batcher and Ray Serve's ``@serve.batch``
do; FastAPI has none of its own).

The first waiting request opens a batch; it closes when ``max_batch`` requests are in it or
``max_wait_ms`` has passed, and runs in a worker thread (the event loop keeps accepting
requests meanwhile). ``max_batch`` 1 runs every request alone (batching off).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any


class Batcher:
    """Collects calls of ``run(items) -> results`` (one result per item) into batches."""

    def __init__(self, run: Callable[[Sequence[Any]], list[Any]], max_batch: int = 8,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch} "
                             f"and {max_wait_ms}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> Any:
        """``run``'s result for ``item``, computed in some batch; its exception if it raised."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
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
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            if self.on_batch:
                self.on_batch(len(batch))
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in batch])
            except Exception as e:  # every request of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
