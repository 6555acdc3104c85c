"""The HTTP endpoints of ``personkit serve`` (see :mod:`personkit.serve.app`)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from personkit.extras import require
from personkit.serve.service import (
    STATIC,
    ApiError,
    Service,
    overlay_uri,
    parse_boxes,
    person_json,
    read_upload,
)

require("fastapi")  # the serve extra (a clear error naming it when missing)
from fastapi import Request  # noqa: E402  (FastAPI resolves handler annotations by name)
from fastapi.responses import FileResponse, Response  # noqa: E402

#: Multipart limits per request: files and other fields.
MAX_FILES, MAX_FIELDS = 2, 16


async def _form(request: Any) -> Any:
    try:
        return await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except Exception as e:  # starlette's MultiPartException, python-multipart's errors
        raise ApiError(400, "body", f"not a valid multipart/form-data upload: {e}") from None


def _flag(request: Any, name: str) -> bool:
    return request.query_params.get(name, "0").lower() in ("1", "true", "yes")


def _entry_json(entry: Any) -> dict[str, Any]:
    return {"id": entry.id, "source": entry.source, "track_id": entry.track_id,
            "first_frame": entry.first_frame, "last_frame": entry.last_frame,
            "first_time": entry.first_time, "last_time": entry.last_time,
            "attributes": {a: {"label": lab, "confidence": round(p, 4)}
                           for a, (lab, p) in entry.attributes.items()},
            "thumbnail": f"/thumbs/{entry.id}"}


def add_routes(app: Any, service: Service) -> None:
    """Register the endpoints on ``app``."""
    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Any:
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            raise ApiError(404, "name", f"no static file {name!r}")
        return FileResponse(path)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        index = service.index
        return {"status": "ok", "model": service.predictor.model_id,
                "heads": list(service.predictor.heads),
                "index": None if index is None else {
                    "path": str(index.path),
                    "entries": await asyncio.to_thread(index.store.count),
                    "attributes": index.info.attributes,
                    "threshold": (index.info.calibration or {}).get("threshold")}}

    @app.get("/metrics")
    async def metrics() -> Any:
        body, kind = service.metrics.render()
        return Response(body, media_type=kind)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        form = await _form(request)
        image = await read_upload(form, "image")
        boxes = parse_boxes(form.get("boxes"))
        results = await service.people(image, boxes)
        service.metrics.people.inc(len(results))
        out: dict[str, Any] = {"width": image.shape[1], "height": image.shape[0],
                               "people": [person_json(r, _flag(request, "embedding"))
                                          for r in results]}
        if _flag(request, "overlay"):
            out["overlay"] = await asyncio.to_thread(overlay_uri, image, results)
        return out

    @app.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        index = service.need_index()
        form = await _form(request)
        k = _int_field(form.get("k"), "k", 10, 1, 1000)
        where = form.get("where") or None
        vector, entry_id, query = await _search_example(service, index, form)
        try:
            out = await asyncio.to_thread(index.search, vector, where, k, entry_id)
        except ValueError as e:
            raise ApiError(400, "where" if "attribute" in str(e) or "filter" in str(e)
                           else "index", str(e)) from None
        for h in out["hits"]:
            h["thumbnail"] = f"/thumbs/{h['id']}"
        return {"query": query, **out}

    @app.get("/tracks/{entry_id}")
    async def track(entry_id: str) -> dict[str, Any]:
        return _entry_json(await _entry(service.need_index(), entry_id))

    @app.get("/thumbs/{entry_id}")
    async def thumb(entry_id: str) -> Any:
        entry = await _entry(service.need_index(), entry_id)
        return Response(entry.thumbnail, media_type="image/jpeg")

    del page, static, healthz, metrics, predict, search, track, thumb  # registered


async def _search_example(service: Service, index: Any, form: Any) -> tuple[Any, Any, dict]:
    """The search's example: an ``entry`` id, or the person in an ``example`` upload (in
    ``box``, else the one the detector finds, else the whole image); none: a filter only."""
    entry_id = form.get("entry") or None
    if entry_id:
        vector = (await _entry(index, entry_id)).embedding
        return vector, entry_id, {"entry": entry_id, "thumbnail": f"/thumbs/{entry_id}"}
    example = await read_upload(form, "example", required=False)
    if example is None:
        if form.get("box"):
            raise ApiError(400, "box", "a box needs the example image it is in")
        return None, None, {}
    box = None
    if form.get("box"):
        from personkit.index.search import parse_box

        try:
            box = np.asarray([parse_box(form["box"])], np.float64)
        except ValueError as e:
            raise ApiError(400, "box", str(e)) from None
    results = await service.people(example, box)
    if not results:
        raise ApiError(400, "example", "no person found in the example image: give the "
                                       "person's box")
    return results[0].embedding, None, {"example": "upload", "box": list(results[0].box),
                                        "thumbnail": overlay_uri(example, results[:1])}


async def _entry(index: Any, entry_id: str) -> Any:
    try:
        return await asyncio.to_thread(index.get, entry_id)
    except KeyError:
        raise ApiError(404, "id", f"no entry {entry_id!r} in the index") from None


def _int_field(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, name, f"expected an integer, got {value!r}") from None
    if not low <= n <= high:
        raise ApiError(400, name, f"must be in [{low}, {high}], got {n}")
    return n
