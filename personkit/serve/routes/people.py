"""The people index over HTTP: ``POST /search``, ``GET /cameras``, ``GET /tracks/{id}``,
``GET /thumbs/{id}``, ``DELETE /people/{id}``.

Store errors are classified by their type (:mod:`personkit.index.entries`): a bad filter is a
400 naming ``where``, an example of another width names ``example``, an empty index names
``index``; anything else is a JSON 500 (the app's handler), never plain text.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from personkit.index.entries import DEFAULT_K, EmptyIndexError, ExampleError, FilterError
from personkit.index.people import PeopleIndex
from personkit.serve.routes import ERRORS, IndexDep, ServiceDep
from personkit.serve.routes.predict import read_image_field
from personkit.serve.schemas import CamerasOut, EntryOut, ForgetOut, SearchOut
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
    return {"id": entry.id, "source": entry.source, "camera": entry.source,
            "recording": entry.recording or entry.source, "track_id": entry.track_id,
            "first_frame": entry.first_frame, "last_frame": entry.last_frame,
            "first_time": entry.first_time, "last_time": entry.last_time,
            "first_seen": entry.first_seen, "last_seen": entry.last_seen,
            "time_source": entry.time_source or None,
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


def _audit(service: Service, request: Request, event: str, **details: Any) -> None:
    """One line of the index's audit for this request (:mod:`personkit.index.audit`)."""
    service.record(event, request.client.host if request.client else None,
                   request.headers.get("authorization"), route=request.url.path, **details)


@router.post("/search", response_model=SearchOut, responses=ERRORS)
async def search(service: ServiceDep, index: IndexDep, request: Request,
                 where: Annotated[str | None, Form(description="attribute filters, e.g. "
                                                   "gender=female backpack=yes; "
                                                   "camera=NAME (or source=NAME): one camera "
                                                   "(GET /cameras)")] = None,
                 since: Annotated[str | None, Form(description="people seen at or after: "
                                                   "ISO-8601 (UTC without a zone) or a span "
                                                   "before now (30m, 2h, 7d)")] = None,
                 until: Annotated[str | None, Form(description="people seen at or before "
                                                   "(as since)")] = None,
                 k: Annotated[int, Form(ge=1, le=MAX_K, description="results")] = DEFAULT_K,
                 offset: Annotated[int, Form(ge=0, description="results to skip (paging: "
                                             "the answer's next_offset)")] = 0,
                 entry: Annotated[str | None, Form(description="an entry id as the "
                                                   "example")] = None,
                 example: Annotated[UploadFile | None, File(description="an image as the "
                                                            "example")] = None,
                 box: Annotated[str | None, Form(description="x1,y1,x2,y2: the person in "
                                                 "the example image")] = None) -> Any:
    """People of the index nearest to an example (an ``entry``, or the person in an
    ``example`` image) among those passing ``where`` and seen between ``since`` and
    ``until``; without an example, those passing them, newest first. One page: results
    ``offset`` to ``offset + k - 1``."""
    if k + offset > MAX_K:
        raise ApiError(400, "offset", f"k + offset must be <= {MAX_K}, got {k + offset}")
    since, until = _time_range(since, until)
    vector, entry_id, query = await _example(service, index, entry or None, example, box)
    wanted = min(k + offset + 1, MAX_K)  # one more than the page: is there a next one?
    try:
        out = await asyncio.to_thread(index.search, vector, where or None, wanted, entry_id,
                                      since, until, service.live_cameras())
    except tuple(kind for kind, _ in STORE_ERRORS) as e:
        raise ApiError(400, next(f for kind, f in STORE_ERRORS if isinstance(e, kind)),
                       str(e)) from None
    hits = out.pop("hits")
    for h in hits:
        h["thumbnail"] = thumb_url(h["id"])
    more = len(hits) > k + offset
    _audit(service, request, "search", where=where or "", since=since, until=until,
           example=query.get("entry") or query.get("example"),
           hits=len(hits[offset:offset + k]))
    return {**out, "query": query, "k": k, "offset": offset, "hits": hits[offset:offset + k],
            "next_offset": offset + k if more else None, "warning": query.get("warning")}


def _time_range(since: str | None, until: str | None) -> tuple[str | None, str | None]:
    """``since`` and ``until`` as ISO text; a 400 naming the field of an unreadable time, or
    ``since`` when it is after ``until``."""
    from personkit.data.times import parse_time, time_range

    for name, value in (("since", since), ("until", until)):
        try:
            if value:
                parse_time(value, name)
        except ValueError as e:
            raise ApiError(400, name, str(e)) from None
    try:
        return time_range(since or None, until or None, ("since", "until"))
    except ValueError as e:
        raise ApiError(400, "since", str(e)) from None


@router.get("/cameras", response_model=CamerasOut, responses=ERRORS,
            response_model_exclude_unset=True)  # a camera of the index alone: name, entries
async def cameras(service: ServiceDep) -> Any:
    """The index's cameras by name, with their people (over all their recordings): what
    ``camera=NAME`` in ``where`` filters on; a live camera (``--camera``) also with its
    health: state, frames, frames/s, drops, reconnects, last frame, error."""
    return {"cameras": await asyncio.to_thread(service.cameras)}


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
async def track(service: ServiceDep, index: IndexDep, request: Request, entry_id: str) -> Any:
    """One person of the index."""
    entry = await get_entry(index, entry_id)
    _audit(service, request, "entry", id=entry_id)
    return entry_json(entry)


@router.get("/thumbs/{entry_id:path}", response_class=Response, responses={
    **ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "the thumbnail"}})
async def thumb(service: ServiceDep, index: IndexDep, request: Request,
                entry_id: str) -> Response:
    """One person's thumbnail (JPEG)."""
    entry = await get_entry(index, entry_id)
    _audit(service, request, "thumbnail", id=entry_id)
    return Response(entry.thumbnail, media_type="image/jpeg")


@router.delete("/people/{entry_id:path}", response_model=ForgetOut, responses=ERRORS)
async def forget_person(service: ServiceDep, index: IndexDep, request: Request,
                        entry_id: str) -> Any:
    """Forget one person: the entry leaves every file of the index, its thumbnail and its
    track in the index's tracking output too (:func:`~personkit.index.forget.forget`); a live
    camera still tracking them writes them no more."""
    from personkit.index.forget import forget

    await get_entry(index, entry_id)  # 404 naming it
    committer = service.ingest.committer if service.ingest is not None else None
    if committer is not None:  # a live camera may still be tracking them
        await asyncio.to_thread(committer.forget, [entry_id])
    out = await asyncio.to_thread(forget, index, [entry_id])
    _audit(service, request, "forget", id=entry_id, forgotten=len(out["forgotten"]))
    return {"forgotten": out["forgotten"], "entries": out["entries"]}
