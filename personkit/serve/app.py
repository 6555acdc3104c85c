"""``personkit serve``: the network and a people index over HTTP (FastAPI + uvicorn, the
``serve`` extra), and a web page at ``/`` that uses the same API.

Endpoints (docs/search.md has examples):

* ``POST /predict`` (multipart: ``image``, optional ``boxes`` as JSON ``[[x1, y1, x2, y2],
  ...]``; query ``overlay=1`` adds a drawn picture, ``embedding=1`` the embeddings): every
  person's box, attributes, keypoints and part fractions. Without boxes the server's detector
  finds the people, or, with none, the image is one person crop. Concurrent requests are
  batched (:mod:`personkit.serve.batching`).
* ``POST /search`` (multipart: ``where``, ``k``, and an example: ``entry`` id, or ``example``
  image with optional ``box``): :meth:`~personkit.index.people.PeopleIndex.search`.
* ``GET /tracks/{id}``, ``GET /thumbs/{id}``: one entry and its thumbnail (JPEG).
* ``GET /healthz``; ``GET /metrics`` (Prometheus text format).

A user mistake is answered 4xx with ``{"error": ..., "field": ...}`` and the server keeps
serving; uploads over the size limit are refused (413) before they are read in full.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from personkit.extras import require
from personkit.index.people import PeopleIndex
from personkit.inference.predictor import Predictor
from personkit.serve.limits import UploadLimit
from personkit.serve.routes import add_routes
from personkit.serve.service import ApiError, Service


def create_app(service: Service, max_upload_mb: float = 10.0) -> Any:
    """The FastAPI application of ``service`` (routes in :mod:`personkit.serve.routes`)."""
    fastapi = require("fastapi")
    from fastapi.responses import JSONResponse

    app = fastapi.FastAPI(title="personkit", version="1", docs_url="/docs")

    @app.exception_handler(ApiError)
    async def _api_error(request: Any, e: ApiError) -> Any:
        return JSONResponse({"error": e.message, "field": e.field}, status_code=e.status)

    @app.middleware("http")
    async def _count(request: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        service.metrics.observe(getattr(route, "path", "other"), response.status_code,
                                time.perf_counter() - start)
        return response

    add_routes(app, service)
    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 1024 * 1024))
    return app


def serve(run: str | Path, index: str | Path | None = None, *, host: str = "127.0.0.1",
          port: int = 8000, max_batch: int = 8, max_wait_ms: float = 5.0,
          max_upload_mb: float = 10.0, device: str = "auto", flip_tta: bool = True,
          threads: int | None = None, detector: str | None = None,
          detector_score: float = 0.5) -> None:
    """``personkit serve``: load the model (and index, detector) and serve until stopped."""
    uvicorn = require("uvicorn")
    from personkit.inference.detectors import open_detector

    predictor = Predictor.from_checkpoint(run, device, flip_tta=flip_tta, threads=threads,
                                          batch_size=max(32, max_batch))
    service = Service(predictor, PeopleIndex.open(index) if index else None,
                      open_detector(detector, "cpu", detector_score, threads) if detector
                      else None, max_batch, max_wait_ms)
    print(f"personkit serve: http://{host}:{port}/ (model {predictor.model_id}"
          f"{f', index {index}' if index else ''})", flush=True)
    uvicorn.run(create_app(service, max_upload_mb), host=host, port=port, log_level="warning")
