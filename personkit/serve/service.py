"""What the endpoints of ``personkit serve`` share: the :class:`Service` (predictor, batcher,
index, detector, metrics and :class:`~personkit.serve.settings.Limits`), the user-mistake
error :class:`ApiError` and the parsing of uploads and boxes.

Every upload's size is read from its header before anything is decoded (any format the
decoder reads: :func:`~personkit.data.io.check_pixels`); decoding, detection and the network
run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.io import BadImageError, ImageTooLargeError, check_pixels, decode_image
from personkit.index.audit import AuditLog, key_id
from personkit.index.people import PeopleIndex
from personkit.index.search import example_boxes
from personkit.inference.predictor import PersonResult, Predictor
from personkit.serve.batching import Batcher, BatcherStopped
from personkit.serve.ingest import CameraCollector, Ingest, SharedNetwork
from personkit.serve.metrics import ServiceMetrics
from personkit.serve.settings import (
    CHECKPOINT_SECONDS,
    MAX_BATCH,
    MAX_WAIT_MS,
    CameraSpec,
    Limits,
)

STATIC = Path(__file__).resolve().parent / "static"
#: Said in ``/predict`` and ``/search`` answers when a whole upload became one person.
WHOLE_IMAGE = ("no boxes were given and the server has no detector: the whole image was "
               "taken as one person")
#: The same for a search's ``example`` upload (in place of the CLI's words, which name
#: ``--box``).
WHOLE_EXAMPLE = ("no box was given and the server has no detector: the whole example image "
                 "was taken as one person")


class ApiError(Exception):
    """A user mistake: answered with ``status`` and ``{"error": message, "field": field}``."""

    def __init__(self, status: int, field: str | None, message: str,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message
        self.headers = headers or {}


def parse_boxes(text: str | None, max_boxes: int) -> np.ndarray | None:
    """The ``boxes`` field: JSON ``[[x1, y1, x2, y2], ...]`` (None when absent); more than
    ``max_boxes`` is a 413 naming the field."""
    if text is None or not text.strip():
        return None
    try:
        boxes = np.asarray(json.loads(text), dtype=np.float64)
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ApiError(400, "boxes", f"not a JSON list of [x1, y1, x2, y2] boxes: {e}") from None
    if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise ApiError(400, "boxes", f"expected a list of [x1, y1, x2, y2], got shape "
                                     f"{list(boxes.shape)}")
    boxes = boxes.reshape(-1, 4)
    if len(boxes) > max_boxes:
        raise ApiError(413, "boxes", f"{len(boxes):,} boxes, more than the limit of "
                                     f"{max_boxes:,} per image (personkit serve --max-boxes)")
    return boxes


def check_boxes(boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Boxes clipped to the image; one with no area inside it is a 400 naming it."""
    from personkit.inference.preprocess import clip_boxes

    try:
        return clip_boxes(boxes, image.shape[1], image.shape[0])
    except ValueError as e:
        raise ApiError(400, "boxes", str(e)) from None


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
    detector, the limits and the metrics. :meth:`close` stops it (the server's shutdown)."""

    def __init__(self, predictor: Predictor, index: PeopleIndex | None, detector: Any = None,
                 max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS,
                 limits: Limits | None = None,
                 cameras: Sequence[tuple[CameraSpec, Any]] = (),
                 checkpoint_seconds: float = CHECKPOINT_SECONDS):
        if index is not None and predictor.model_id != index.info.model:
            raise ValueError(f"the index {index.path} holds people of model {index.info.model}, "
                             f"the served model is {predictor.model_id}: serve the index's model")
        self.predictor, self.index, self.detector = predictor, index, detector
        self.limits = limits or Limits()
        if predictor.max_part_pixels is None:  # part maps at most 4× the network's output
            predictor.max_part_pixels = 4 * predictor.input_size[0] * predictor.input_size[1]
        self.metrics = ServiceMetrics()
        #: who looked at whom: INDEX/audit.jsonl (:mod:`personkit.index.audit`)
        self.audit = AuditLog(index.path) if index is not None else None
        self.stopping = threading.Event()
        #: the live cameras (:mod:`personkit.serve.ingest`), started with the server
        self.ingest = Ingest(cameras, predictor, index, checkpoint_seconds) if cameras else None
        if self.ingest is not None:
            self.metrics.registry.register(CameraCollector(self.ingest))
        self.batcher = Batcher(self._predict, max_batch, max_wait_ms,
                               self.metrics.batch_size.observe,
                               max_queue=self.limits.max_concurrency + self.limits.max_queue
                               + len(cameras))  # each camera waits on one frame at a time

    def record(self, event: str, client: str | None, authorization: str | None,
               **details: Any) -> None:
        """One line of the audit (:mod:`personkit.index.audit`; nothing without an index)."""
        if self.audit is not None:
            self.audit.write(event, client, key_id(authorization), **details)

    def _predict(self, items: list[tuple[np.ndarray, np.ndarray | None]]) -> list[Any]:
        return self.predictor.predict_many(items, stop=self.stopping.is_set)

    async def image(self, data: bytes, field: str) -> np.ndarray:
        """The uploaded image of ``field``, its size checked from its header (413 over
        ``max_pixels``) and then decoded in a worker thread (400 when it cannot be)."""
        what = f"the uploaded {field!r}"
        try:
            if not data:
                raise BadImageError(f"{what} is empty")
            check_pixels(np.frombuffer(data, np.uint8), what, self.limits.max_pixels)
            return await asyncio.to_thread(decode_image, data, what, self.limits.max_pixels)
        except ImageTooLargeError as e:
            raise ApiError(413, field, f"{e} (personkit serve --max-pixels)") from None
        except BadImageError as e:
            raise ApiError(400, field, str(e)) from None

    async def people(self, image: np.ndarray,
                     boxes: np.ndarray | None) -> tuple[list[PersonResult], str | None]:
        """The network's results for ``boxes`` of ``image`` (None: the detector's people, or
        with no detector the whole image as one person, said by the warning returned)."""
        if self.stopping.is_set():
            raise BatcherStopped("the server is shutting down")
        warning = None
        if boxes is None and self.detector is not None:
            found = await asyncio.to_thread(self.detector.detect, [image])
            found = found[0][np.argsort(-found[0][:, 4], kind="stable")[:self.limits.max_boxes]]
            boxes = found[:, :4].astype(np.float64)
        elif boxes is None:
            warning = WHOLE_IMAGE
        if boxes is not None:
            boxes = check_boxes(boxes, image)
            if not len(boxes):
                return [], warning
        return await self.batcher.submit((image, boxes)), warning

    async def example(self, image: np.ndarray,
                      box: np.ndarray | None) -> tuple[PersonResult, str | None]:
        """The person a search looks for (:func:`~personkit.index.search.example_boxes`: the
        ``box``, else the detector's best person, else the whole image)."""
        try:
            boxes, warning = await asyncio.to_thread(example_boxes, image, box, self.detector)
        except ValueError as e:
            raise ApiError(400, "example", str(e)) from None
        if boxes is not None:
            boxes = check_boxes(boxes, image)
        elif warning is not None:
            warning = WHOLE_EXAMPLE
        if self.stopping.is_set():
            raise BatcherStopped("the server is shutting down")
        return (await self.batcher.submit((image, boxes)))[0], warning

    def start(self) -> None:
        """Start the live cameras, if any: called on the server's event loop, whose batcher
        their network goes through (:class:`~personkit.serve.ingest.SharedNetwork`)."""
        if self.ingest is not None:
            self.ingest.start(SharedNetwork(self.predictor, self.batcher,
                                            asyncio.get_running_loop()))

    def cameras(self) -> list[dict[str, Any]]:
        """``GET /cameras``: the index's cameras with their people, each live camera with its
        health too (:meth:`~personkit.serve.ingest.CameraWorker.status`), by name."""
        counts = self.need_index().store.sources()
        live = {s["name"]: s for s in (self.ingest.status() if self.ingest else [])}
        return [{"name": name, "entries": counts.get(name, 0), **live.get(name, {})}
                for name in sorted({*counts, *live})]

    def live_cameras(self) -> list[str]:
        """The names of the live cameras writing into the index (``--camera``)."""
        return [w.spec.name for w in self.ingest.workers] if self.ingest else []

    def need_index(self) -> PeopleIndex:
        if self.index is None:
            raise ApiError(404, "index", "this server has no people index: start it with "
                                         "`personkit serve --index INDEX`")
        return self.index

    async def close(self) -> None:
        """Stop: the batch in progress ends after its current forward pass, waiting requests
        are answered 503."""
        self.stopping.set()
        if self.ingest is not None:  # every running track ended and written first
            await asyncio.to_thread(self.ingest.stop)
        await self.batcher.close()
        if self.audit is not None:
            self.audit.close()
