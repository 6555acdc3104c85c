"""The service's request and response shapes (pydantic models), so ``/openapi.json`` and the
``/docs`` page describe every answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer: what went wrong and the request field it concerns."""

    error: str
    field: str | None = None


class AttributeOut(BaseModel):
    label: str = Field(description="the decision (a binary attribute: by its calibrated "
                                   "threshold)")
    probability: float = Field(description="the decided label's probability")
    positive: float | None = Field(None, description="a binary attribute's probability of "
                                                     "class 1 (\"yes\", \"female\", ...)")


class PersonOut(BaseModel):
    """One person of ``/predict``: a field is absent when its head is off."""

    box: list[float] = Field(description="x1, y1, x2, y2 in image pixels, clipped to the image")
    attributes: dict[str, AttributeOut] | None = None
    keypoints: list[list[float]] | None = Field(
        None, description="16 MPII joints: x, y (image pixels), confidence")
    part_fractions: dict[str, float] | None = Field(
        None, description="share of the box's pixels per body-part class")
    embedding: list[float] | None = Field(None, description="ReID embedding (?embedding=1)")


class PredictOut(BaseModel):
    width: int
    height: int
    people: list[PersonOut]
    overlay: str | None = Field(None, description="JPEG data URI with every person drawn "
                                                  "(?overlay=1)")
    warning: str | None = Field(None, description="e.g. the whole image was taken as one "
                                                  "person (no boxes, no detector)")


class EntryAttributeOut(BaseModel):
    label: str = Field(description="the track's decision")
    confidence: float = Field(description="the decided label's probability, merged over the "
                                          "track")
    positive: float | None = Field(None, description="a binary attribute's merged probability "
                                                     "of class 1 (what NAME>=P filters read)")


class EntryOut(BaseModel):
    """One person of the index (``/tracks/{id}``)."""

    id: str = Field(description="CAMERA:TRACK, or CAMERA/RECORDING:TRACK for a recording not "
                                "named as its camera")
    source: str = Field(description="its camera (the older name of camera)")
    camera: str = Field(description="the camera it was seen by")
    recording: str = Field(description="the camera's recording it came from (a file, or one "
                                       "connection to a stream)")
    track_id: int
    first_frame: int
    last_frame: int
    first_time: float = Field(description="seconds from the recording's first frame")
    last_time: float
    first_seen: str | None = Field(None, description="when it was first seen, ISO-8601 UTC "
                                                     "(None: the recording's start is unknown)")
    last_seen: str | None = Field(None, description="when it was last seen, ISO-8601 UTC")
    time_source: str | None = Field(None, description="how the recording's start is known: "
                                                      "start_time (given), creation_time (file "
                                                      "metadata), mtime (file modification "
                                                      "time), wall_clock (a stream)")
    attributes: dict[str, EntryAttributeOut]
    thumbnail: str = Field(description="URL of its thumbnail (JPEG)")


class HitOut(EntryOut):
    """One search result: an entry, its distance to the example and the same-person
    decision (None without an example or a calibrated threshold)."""

    identity: str = ""
    distance: float | None
    same_person: bool | None


class QueryOut(BaseModel):
    """What was searched for."""

    entry: str | None = None
    example: str | None = None
    box: list[float] | None = None
    thumbnail: str | None = None
    warning: str | None = None


class SearchOut(BaseModel):
    """One page of results: ``hits`` are the results ``offset`` to ``offset + k - 1``."""

    query: QueryOut
    where: dict[str, Any]
    k: int
    offset: int = Field(0, description="results skipped before the first hit")
    next_offset: int | None = Field(None, description="the offset of the next page; None "
                                                      "when no result follows this page")
    threshold: float | None
    hits: list[HitOut]
    warning: str | None = Field(None, description="as in /predict: the whole example image "
                                                  "was taken as one person (also in "
                                                  "query.warning)")


class CameraOut(BaseModel):
    """One camera of the index (a camera, sequence or crop folder), all its recordings."""

    name: str = Field(description="what ``camera=NAME`` filters on")
    entries: int = Field(description="its people in the index")
    live: bool = Field(False, description="tracked by this server (--camera): the fields "
                                          "below are its health")
    source: str | None = Field(None, description="a stream's address (no password), a file's "
                                                 "name")
    state: str | None = Field(None, description="connecting, running, reconnecting, failed "
                                                "or ended")
    error: str | None = Field(None, description="why it failed, or why it reconnects")
    frames: int | None = Field(None, description="frames tracked")
    frames_read: int | None = Field(None, description="frames read from the source")
    dropped: int | None = Field(None, description="frames dropped to keep up")
    fps: float | None = Field(None, description="frames tracked per second (last 10 s)")
    reconnects: int | None = Field(None, description="connections tried again")
    last_frame_time: str | None = Field(None, description="capture time of the last frame "
                                                          "tracked, ISO-8601 UTC")
    recording: str | None = Field(None, description="the recording its entries go to now")
    tracks_live: int | None = Field(None, description="tracks running (searchable as they "
                                                      "grow)")
    committed: int | None = Field(None, description="ended tracks written to the index by "
                                                    "this server")
    time_jumps: int | None = Field(None, description="jumps in the source's timestamps "
                                                     "(its capture times stay monotonic)")


class CamerasOut(BaseModel):
    """The index's sources, by name."""

    cameras: list[CameraOut]


class ForgetOut(BaseModel):
    """What ``DELETE /people/{id}`` forgot (docs/search.md, Privacy and security)."""

    forgotten: list[str] = Field(description="the entry ids forgotten")
    entries: int = Field(description="entries left in the index")


class IndexHealth(BaseModel):
    name: str = Field(description="the index folder's name (never the server's path)")
    entries: int
    attributes: dict[str, list[str]]
    threshold: float | None


class HealthOut(BaseModel):
    status: str
    model: str | None
    heads: list[str]
    index: IndexHealth | None
