"""``POST /predict``: every person's box, attributes, keypoints and part fractions."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from personkit.serve.routes import ERRORS, ServiceDep
from personkit.serve.schemas import PredictOut
from personkit.serve.service import ApiError, Service, overlay_uri, parse_boxes, person_json

router = APIRouter(tags=["predict"])


async def read_image_field(service: Service, upload: UploadFile | None, field: str,
                           required: bool = True) -> Any:
    """The decoded image of multipart ``field`` (None when absent and not ``required``)."""
    if upload is None:
        if required:
            raise ApiError(400, field, f"missing: send the image as the multipart file field "
                                       f"{field!r}")
        return None
    return await service.image(await upload.read(), field)


@router.post("/predict", response_model=PredictOut, response_model_exclude_none=True,
             responses=ERRORS)
async def predict(service: ServiceDep,
                  image: Annotated[UploadFile | None, File(description="the image (JPEG, "
                                                           "PNG, WebP, ...)")] = None,
                  boxes: Annotated[str | None, Form(description="JSON [[x1, y1, x2, y2], "
                                                    "...]; absent: the server's detector "
                                                    "finds the people")] = None,
                  overlay: bool = False, embedding: bool = False) -> dict[str, Any]:
    """The people of ``image``: in ``boxes``, else those the server's detector finds, else
    the whole image as one person (said in ``warning``). Concurrent requests are batched."""
    picture = await read_image_field(service, image, "image")
    results, warning = await service.people(
        picture, parse_boxes(boxes, service.limits.max_boxes))
    service.metrics.people.inc(len(results))
    out: dict[str, Any] = {"width": picture.shape[1], "height": picture.shape[0],
                           "people": [person_json(r, embedding) for r in results],
                           "warning": warning}
    if overlay:
        out["overlay"] = await asyncio.to_thread(overlay_uri, picture, results)
    return out
