"""``personkit serve``: the network and a people index over HTTP (FastAPI + uvicorn, the
``serve`` extra), and a web page at ``/`` that uses the same API.

Endpoints (docs/search.md has examples; ``/docs`` and ``/openapi.json`` describe each):

* ``POST /predict`` (multipart: ``image``, optional ``boxes`` as JSON ``[[x1, y1, x2, y2],
  ...]``; query ``overlay=1`` adds a drawn picture, ``embedding=1`` the embeddings): every
  person's box, attributes, keypoints and part fractions. Without boxes the server's detector
  finds the people, or, with none, the image is one person crop (said in ``warning``).
  Concurrent requests are batched (:mod:`personkit.serve.batching`).
* ``POST /search`` (multipart: ``where``, ``k``, and an example: ``entry`` id, or ``example``
  image with optional ``box``): :meth:`~personkit.index.people.PeopleIndex.search`.
* ``GET /tracks/{id}``, ``GET /thumbs/{id}``: one entry and its thumbnail (JPEG).
* ``GET /healthz``; ``GET /metrics`` (Prometheus text format).

Every error is JSON ``{"error": ..., "field": ...}``: a user mistake 4xx naming the field,
work over the limits 413 (:class:`~personkit.serve.service.Limits`: upload bytes, image
pixels, boxes), a busy server 503 with ``Retry-After`` (:mod:`personkit.serve.limits`), a bug
500; the server keeps serving. SIGTERM or Ctrl-C stop it within seconds: waiting requests get
503, the batch in progress ends after its current forward pass.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from personkit.extras import require
from personkit.inference.predictor import PredictionStopped, Predictor
from personkit.models.detector import DetectorBase
from personkit.serve.access import Access, AccessControl, access_for
from personkit.serve.batching import BatcherBusy, BatcherStopped
from personkit.serve.ingest import open_served_index
from personkit.serve.limits import Admission, UploadLimit, send_error
from personkit.serve.metrics import CountRequests
from personkit.serve.retention import Retention
from personkit.serve.service import ApiError, Service
from personkit.serve.settings import (
    CHECKPOINT_SECONDS,
    HOST,
    MAX_BATCH,
    MAX_WAIT_MS,
    PORT,
    CameraSpec,
    Limits,
)

log = logging.getLogger("personkit.serve")
#: Seconds uvicorn waits for requests in progress when told to stop.
GRACEFUL_SECONDS = 5
#: The routes whose work is bounded by ``--max-concurrency``.
WORK_ROUTES = {("POST", "/predict"), ("POST", "/search")}


def _error(status: int, message: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _validation_message(error: dict[str, Any]) -> str:
    """A pydantic error in the service's words (``k``: an integer in its range)."""
    kind, value, ctx = error.get("type", ""), error.get("input"), error.get("ctx") or {}
    if kind == "int_parsing":
        return f"expected an integer, got {value!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = f">= {ctx.get('ge')}" if kind == "greater_than_equal" else f"<= {ctx.get('le')}"
        return f"must be {bound}, got {value}"
    return str(error.get("msg", "invalid"))


def hide_paths(message: str, service: Service) -> str:
    """``message`` without the server's own paths (the index's, the model's, the working
    folder and home): an error tells a client what was wrong, not where files live."""
    places = [service.index.path if service.index is not None else None,
              getattr(service.predictor, "path", None), Path.cwd(), Path.home()]
    found = {str(p) for place in places if place for p in (Path(place), Path(place).resolve())}
    for path in sorted(found - {"/", "."}, key=len, reverse=True):
        message = message.replace(path, "…")
    return message


def add_error_handlers(app: Any) -> None:
    """Every error the application expects as ``{"error", "field"}`` JSON: user mistakes,
    validation, HTTP errors, a busy or stopping server (the unexpected: :class:`JsonErrors`)."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def _api(request: Any, e: ApiError) -> Any:
        return _error(e.status, hide_paths(e.message, request.app.state.service), e.field,
                      e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, e: RequestValidationError) -> Any:
        first = e.errors()[0] if e.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return _error(400, _validation_message(first), loc[-1] if loc else None)

    @app.exception_handler(HTTPException)
    async def _http(request: Any, e: HTTPException) -> Any:
        return _error(e.status_code, str(e.detail), "body" if e.status_code == 400 else None)

    @app.exception_handler(BatcherBusy)
    async def _busy(request: Any, e: BatcherBusy) -> Any:
        return _error(503, f"the server is busy ({e}): retry after 1 s", None,
                      {"Retry-After": "1"})

    @app.exception_handler(BatcherStopped)
    @app.exception_handler(PredictionStopped)
    async def _stopped(request: Any, e: Exception) -> Any:
        return _error(503, f"the server is stopping ({e})", None, {"Retry-After": "5"})

    del _api, _invalid, _http, _busy, _stopped  # registered


class JsonErrors:
    """ASGI middleware: an unexpected exception of the application becomes a JSON 500
    (``internal error (TypeName)``), logged with its traceback, and goes no further (Starlette's
    own last-resort handler would answer, then raise it again to the server, which resets
    the connection)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as e:
            log.exception("personkit serve: %s %s failed", scope["method"], scope["path"])
            if not started:
                await send_error(send, 500, f"internal error ({type(e).__name__}); the server "
                                            f"log has the details", None)


def create_app(service: Service, access: Access | None = None,
               retention: Retention | None = None) -> Any:
    """The FastAPI application of ``service``: its routers (:mod:`personkit.serve.routes`),
    error handlers and, outermost first, CORS (only with ``access.cors_origin``), access
    control (:mod:`personkit.serve.access`; default: loopback hosts, no key), request
    counting, admission, the upload limit and the last-resort JSON 500."""
    fastapi = require("fastapi")
    from personkit.serve.routes import routers

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        service.start()  # the live cameras, if any (--camera)
        if retention is not None:
            retention.start()
        yield
        if retention is not None:
            retention.close()  # a forget in progress finishes
        await service.close()  # waiting requests get 503; the running batch stops early
        print("personkit serve: stopped", flush=True)

    app = fastapi.FastAPI(title="personkit", version="1", docs_url="/docs", lifespan=lifespan)
    app.state.service = service
    for router in routers():
        app.include_router(router)
    add_error_handlers(app)
    limits = service.limits
    app.add_middleware(JsonErrors)
    app.add_middleware(UploadLimit, max_bytes=int(limits.max_upload_mb * 1024 * 1024))
    app.add_middleware(Admission, limit=limits.max_concurrency, queue=limits.max_queue,
                       paths=WORK_ROUTES, metrics=service.metrics)
    app.add_middleware(CountRequests, metrics=service.metrics,
                       routes=tuple(path for _, path in WORK_ROUTES))
    access = access or Access()
    app.add_middleware(AccessControl, access=access, on_refusal=lambda scope, status: (
        service.record("refused", (scope.get("client") or (None,))[0],
                       dict(scope["headers"]).get(b"authorization", b"").decode("latin-1"),
                       route=scope["path"], status=status)))
    if access.cors_origin:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[access.cors_origin],
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


def serve(predictor: Predictor, index: str | Path | None = None, *,
          detector: DetectorBase | None = None, host: str = HOST, port: int = PORT,
          max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS,
          limits: Limits | None = None, access: Access | None = None,
          tls: tuple[str, str] | None = None,
          cameras: Sequence[tuple[CameraSpec, DetectorBase | None]] = (),
          checkpoint_seconds: float = CHECKPOINT_SECONDS, retain: str | None = None) -> None:
    """``personkit serve``: ``predictor`` (and the index at ``index``, the ``detector`` that
    finds the people of an image sent without boxes) over HTTP until stopped; ``max_batch``
    and ``max_wait_ms``: how ``/predict`` requests are batched
    (:class:`~personkit.serve.batching.Batcher`); ``access``: who may use it (default:
    :func:`~personkit.serve.access.access_for` ``host`` without a key, refused unless
    loopback); ``tls``: a certificate and key file for HTTPS; ``cameras``: live cameras
    (each with its detector) tracked into the index, created when missing, their running
    tracks written every ``checkpoint_seconds`` (:mod:`personkit.serve.ingest`); ``retain``:
    forget the index's entries last seen longer ago than this span (``7d``), at start and on a
    schedule (:mod:`personkit.serve.retention`)."""
    uvicorn = require("uvicorn")

    access = access or access_for(host, None)
    limits = limits or Limits()
    service = Service(predictor, open_served_index(index, predictor, bool(cameras)), detector,
                      max_batch, max_wait_ms, limits, cameras, checkpoint_seconds)
    retention = None
    if retain is not None:
        if service.index is None:
            raise ValueError(f"--retain {retain} needs the index whose entries it forgets "
                             f"(--index)")
        retention = Retention(service.index, retain, service.record)
    scheme = "https" if tls else "http"
    print(f"personkit serve: {scheme}://{host}:{port}/ (model {predictor.model_id}"
          f"{f', index {index}' if index else ''}; at most {limits.max_concurrency} requests "
          f"at once, {limits.max_queue} waiting; "
          f"{'an API key needed' if access.api_key else 'no API key'}"
          f"{f'; {len(cameras)} live camera(s)' if cameras else ''})", flush=True)
    config = uvicorn.Config(create_app(service, access, retention), host=host, port=port,
                            log_level="warning", timeout_graceful_shutdown=GRACEFUL_SECONDS,
                            ssl_certfile=tls[0] if tls else None,
                            ssl_keyfile=tls[1] if tls else None)
    stopping_server(uvicorn.Server, service)(config).run()


def stopping_server(base: type, service: Service) -> type:
    """uvicorn's ``Server`` that, told to exit (SIGTERM, Ctrl-C), also stops the service at
    once: the batch in work ends after its current forward pass and every request in work or
    waiting is answered 503, so uvicorn's graceful shutdown finds no request left to wait
    for (it would otherwise wait for them all, then cut them off)."""

    class Server(base):  # type: ignore[misc, valid-type]
        def handle_exit(self, sig: int, frame: Any) -> None:
            service.stopping.set()
            super().handle_exit(sig, frame)

    return Server
