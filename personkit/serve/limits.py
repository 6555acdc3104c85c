"""The upload size limit, as ASGI middleware: a request whose body is larger than the limit
is answered 413 with a JSON error before the application reads it (by its ``Content-Length``,
or, for a chunked body without one, as soon as the bytes received pass the limit)."""

from __future__ import annotations

import json
from typing import Any


class UploadLimit:
    """Refuse request bodies over ``max_bytes`` (413, ``{"error", "field": "body"}``)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps({"error": f"the upload is {size}, more than the limit of "
                                    f"{self.max_bytes:,} bytes (personkit serve "
                                    f"--max-upload-mb)", "field": "body"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

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
