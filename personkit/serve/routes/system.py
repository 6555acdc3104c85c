"""The web page, its files, ``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from personkit.serve.routes import ERRORS, ServiceDep
from personkit.serve.schemas import HealthOut
from personkit.serve.service import STATIC, ApiError

router = APIRouter(tags=["system"])


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    if name not in {p.name for p in STATIC.iterdir()}:
        raise ApiError(404, "name", f"no static file {name!r}")
    return FileResponse(STATIC / name)


@router.get("/healthz", response_model=HealthOut, responses=ERRORS)
async def healthz(service: ServiceDep) -> Any:
    """The model, its heads and the index (entries, attribute vocabulary, threshold)."""
    index = service.index
    return {"status": "ok", "model": service.predictor.model_id,
            "heads": list(service.predictor.heads),
            "index": None if index is None else {
                "name": index.path.name,  # not the server's path
                "entries": await asyncio.to_thread(index.store.count),
                "attributes": index.info.attributes,
                "threshold": index.info.same_person_threshold}}


@router.get("/metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text format: requests by route and status, latency, batch sizes, people,
    refusals."""
    body, kind = service.metrics.render()
    return Response(body, media_type=kind)
