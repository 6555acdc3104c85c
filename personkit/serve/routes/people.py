"""The people index over HTTP: ``POST /search``, ``GET /tracks/{id}``, ``GET /thumbs/{id}``.

Store errors are classified by their type (:mod:`personkit.index.entries`): a bad filter is a
400 naming ``where``, an example of another width names ``example``, an empty index names
``index``; anything else is a JSON 500 (the app's handler), never plain text.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, File, Form, Response, UploadFile

from personkit.index.entries import EmptyIndexError, ExampleError, FilterError
from personkit.index.people import PeopleIndex
from personkit.serve.routes import ERRORS, IndexDep, ServiceDep
from personkit.serve.routes.predict import read_image_field
from personkit.serve.schemas import EntryOut, SearchOut
from personkit.serve.service import ApiError, Service, overlay_uri

router = APIRouter(tags=["people"])
#: The most results one search may ask for (every store answers any k up to it).
MAX_K = 1000
#: Which request field a store error concerns, by its type.
STORE_ERRORS = ((FilterError, "where"), (ExampleError, "example"), (EmptyIndexError, "index"))


def thumb_url(entry_id: str) -> str:
    """The thumbnail URL of an entry (its id percent-encoded: ids may hold ``#``, ``?``,
    ``%``, spaces, ...)."""
    return f"/thumbs/{quote(entry_id, safe='')}"


def entry_json(entry: Any) -> dict[str, Any]:
    return {"id": entry.id, "source": entry.source, "track_id": entry.track_id,
            "first_frame": entry.first_frame, "last_frame": entry.last_frame,
            "first_time": entry.first_time, "last_time": entry.last_time,
            "attributes": {a: {"label": v[0], "confidence": round(v[1], 4),
                               **({"positive": round(v[2], 4)} if len(v) > 2
                                  and v[2] is not None else {})}
                           for a, v in entry.attributes.items()},
            "thumbnail": thumb_url(entry.id)}


async def get_entry(index: PeopleIndex, entry_id: str) -> Any:
    try:
        return await asyncio.to_thread(index.get, entry_id)
    except KeyError:
        raise ApiError(404, "id", f"no entry {entry_id!r} in the index") from None


@router.post("/search", response_model=SearchOut, responses=ERRORS)
async def search(service: ServiceDep, index: IndexDep,
                 where: Annotated[str | None, Form(description="attribute filters, e.g. "
                                                   "gender=female backpack=yes")] = None,
                 k: Annotated[int, Form(ge=1, le=MAX_K, description="results")] = 10,
                 entry: Annotated[str | None, Form(description="an entry id as the "
                                                   "example")] = None,
                 example: Annotated[UploadFile | None, File(description="an image as the "
                                                            "example")] = None,
                 box: Annotated[str | None, Form(description="x1,y1,x2,y2: the person in "
                                                 "the example image")] = None) -> Any:
    """People of the index nearest to an example (an ``entry``, or the person in an
    ``example`` image) among those passing ``where``; without an example, the first ``k``
    passing it (by source, then first frame)."""
    vector, entry_id, query = await _example(service, index, entry or None, example, box)
    try:
        out = await asyncio.to_thread(index.search, vector, where or None, k, entry_id)
    except tuple(kind for kind, _ in STORE_ERRORS) as e:
        raise ApiError(400, next(f for kind, f in STORE_ERRORS if isinstance(e, kind)),
                       str(e)) from None
    for h in out["hits"]:
        h["thumbnail"] = thumb_url(h["id"])
    return {"query": query, **out}


async def _example(service: Service, index: PeopleIndex, entry_id: str | None,
                   upload: UploadFile | None, box: str | None) -> tuple[Any, Any, dict]:
    """The search's example: an ``entry`` id, or the person in an ``example`` upload
    (:func:`~personkit.index.search.example_boxes`); none: a filter only."""
    if entry_id:
        vector = (await get_entry(index, entry_id)).embedding
        return vector, entry_id, {"entry": entry_id, "thumbnail": thumb_url(entry_id)}
    image = await read_image_field(service, upload, "example", required=False)
    if image is None:
        if box:
            raise ApiError(400, "box", "a box needs the example image it is in")
        return None, None, {}
    boxes = None
    if box:
        from personkit.index.search import parse_box

        try:
            boxes = np.asarray([parse_box(box)], np.float64)
        except ValueError as e:
            raise ApiError(400, "box", str(e)) from None
    result, warning = await service.example(image, boxes)
    return result.embedding, None, {"example": "upload", "box": list(result.box),
                                    "thumbnail": overlay_uri(image, [result]),
                                    "warning": warning}


@router.get("/tracks/{entry_id:path}", response_model=EntryOut, responses=ERRORS)
async def track(index: IndexDep, entry_id: str) -> Any:
    """One person of the index."""
    return entry_json(await get_entry(index, entry_id))


@router.get("/thumbs/{entry_id:path}", response_class=Response, responses={
    **ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "the thumbnail"}})
async def thumb(index: IndexDep, entry_id: str) -> Response:
    """One person's thumbnail (JPEG)."""
    return Response((await get_entry(index, entry_id)).thumbnail, media_type="image/jpeg")
