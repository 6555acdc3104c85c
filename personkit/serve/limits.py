"""What bounds the service's work, as ASGI middleware (outermost first):

* :class:`Admission`: at most ``limit`` requests that run the network or the store (``POST``
  to one of its ``paths``) are worked on at once and at most ``queue`` more wait for a slot;
  any further one is answered 503 with ``Retry-After`` before its body is read;
* :class:`UploadLimit`: a request whose body is larger than the limit is answered 413 with a
  JSON error before the application reads it (by its ``Content-Length``, or, for a chunked
  body without one, as soon as the bytes received pass the limit).

Both answer with the service's error shape ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def send_error(send: Any, status: int, message: str, field: str | None,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer an ASGI request with ``{"error": message, "field": field}``."""
    body = json.dumps({"error": message, "field": field}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Admission:
    """Bound the requests in work (``limit``) and waiting (``queue``); see the module
    docstring. ``metrics`` (a :class:`~personkit.serve.metrics.ServiceMetrics`) counts the
    refused requests and those in work."""

    def __init__(self, app: Any, limit: int, queue: int, paths: set[tuple[str, str]],
                 retry_after: int = 1, metrics: Any = None):
        if limit < 1 or queue < 0:
            raise ValueError(f"max_concurrency must be >= 1 and the queue >= 0, got {limit} "
                             f"and {queue}")
        self.app, self.limit, self.queue, self.retry_after = app, limit, queue, retry_after
        self.metrics, self.paths = metrics, paths
        self.active = self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in self.paths:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        if self.active + self.waiting >= self.limit + self.queue:
            if self.metrics is not None:
                self.metrics.refuse(scope["path"])
            await send_error(send, 503, f"the server is busy ({self.active} requests in work, "
                                        f"{self.waiting} waiting): retry after "
                                        f"{self.retry_after} s", None,
                             ((b"retry-after", str(self.retry_after).encode()),))
            return
        self._count(waiting=1)
        try:
            await self._slots.acquire()
        finally:
            self._count(waiting=-1)
        self._count(active=1)
        try:
            await self.app(scope, receive, send)
        finally:
            self._count(active=-1)
            self._slots.release()

    def _count(self, active: int = 0, waiting: int = 0) -> None:
        self.active, self.waiting = self.active + active, self.waiting + waiting
        if self.metrics is not None:
            self.metrics.in_work.set(self.active)
            self.metrics.waiting.set(self.waiting)


class UploadLimit:
    """Refuse request bodies over ``max_bytes`` (413, ``{"error", "field": "body"}``)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any, size: str) -> None:
        await send_error(send, 413, f"the upload is {size}, more than the limit of "
                                    f"{self.max_bytes:,} bytes (personkit serve "
                                    f"--max-upload-mb)", "body")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, f"{int(length):,} bytes")
            return
        chunks, total, more = [], 0, True
        while more:  # read the body here, counting, so a chunked upload is capped too
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            more = message.get("more_body", False)
            if total > self.max_bytes:
                await self._refuse(send, f"over {total:,} bytes")
                return
        body, sent = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
