"""What the endpoints of ``personkit serve`` share: the :class:`Service` (predictor, batcher,
index, detector, metrics), the user-mistake error :class:`ApiError` and the request parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from personkit.index.people import PeopleIndex
from personkit.inference.predictor import PersonResult, Predictor
from personkit.serve.batching import Batcher
from personkit.serve.metrics import ServiceMetrics

STATIC = Path(__file__).resolve().parent / "static"


class ApiError(Exception):
    """A user mistake: answered with ``status`` and ``{"error": message, "field": field}``."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def parse_boxes(text: str | None) -> np.ndarray | None:
    """The ``boxes`` field: JSON ``[[x1, y1, x2, y2], ...]`` (None when absent)."""
    if text is None or not text.strip():
        return None
    try:
        boxes = np.asarray(json.loads(text), dtype=np.float64)
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ApiError(400, "boxes", f"not a JSON list of [x1, y1, x2, y2] boxes: {e}") from None
    if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise ApiError(400, "boxes", f"expected a list of [x1, y1, x2, y2], got shape "
                                     f"{list(boxes.shape)}")
    return boxes.reshape(-1, 4)


def check_boxes(boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Boxes clipped to the image; one with no area inside it is a 400 naming it."""
    from personkit.inference.preprocess import clip_boxes

    try:
        return clip_boxes(boxes, image.shape[1], image.shape[0])
    except ValueError as e:
        raise ApiError(400, "boxes", str(e)) from None


async def read_upload(form: Any, field: str, required: bool = True) -> np.ndarray | None:
    """The image in multipart ``field``, decoded (400 naming the field when it is missing,
    empty, truncated or not an image)."""
    from personkit.data.io import decode_image

    upload = form.get(field)
    if upload is None or isinstance(upload, str):
        if required:
            raise ApiError(400, field, f"missing: send the image as the multipart file field "
                                       f"{field!r}")
        return None
    data = await upload.read()
    try:
        return decode_image(data, f"the uploaded {field!r}")
    except ValueError as e:
        raise ApiError(400, field, str(e)) from None


def person_json(r: PersonResult, embedding: bool) -> dict[str, Any]:
    out = r.to_dict()
    out.pop("parts_box", None)
    if embedding and r.embedding is not None:
        out["embedding"] = [round(float(v), 6) for v in r.embedding]
    return out


def overlay_uri(image: np.ndarray, results: list[PersonResult]) -> str:
    from personkit.data.io import encode_jpeg
    from personkit.inference.visualize import draw_results

    jpeg = encode_jpeg(draw_results(image, results, text=("gender",)))
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class Service:
    """What the endpoints share: the predictor, its batcher, the optional index and
    detector, and the metrics."""

    def __init__(self, predictor: Predictor, index: PeopleIndex | None, detector: Any = None,
                 max_batch: int = 8, max_wait_ms: float = 5.0):
        if index is not None and predictor.model_id != index.info.model:
            raise ValueError(f"the index {index.path} holds people of model {index.info.model}, "
                             f"the served model is {predictor.model_id}: serve the index's model")
        self.predictor, self.index, self.detector = predictor, index, detector
        self.metrics = ServiceMetrics()
        self.batcher = Batcher(predictor.predict_many, max_batch, max_wait_ms,
                               self.metrics.batch_size.observe)

    async def people(self, image: np.ndarray, boxes: np.ndarray | None) -> list[PersonResult]:
        """The network's results for ``boxes`` of ``image`` (see the module docstring)."""
        import asyncio

        if boxes is None and self.detector is not None:
            found = await asyncio.to_thread(self.detector.detect, [image])
            boxes = found[0][:, :4].astype(np.float64)
        if boxes is not None:
            boxes = check_boxes(boxes, image)
            if not len(boxes):
                return []
        return await self.batcher.submit((image, boxes))

    def need_index(self) -> PeopleIndex:
        if self.index is None:
            raise ApiError(404, "index", "this server has no people index: start it with "
                                         "`personkit serve RUN --index INDEX`")
        return self.index
