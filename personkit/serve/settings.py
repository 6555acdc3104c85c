"""What ``personkit serve`` can be told, each with one default for the command line and the
Python API alike: where it listens, how it batches ``/predict`` requests, and the
:class:`Limits` of one request. Light on purpose: the command line reads it to build its
parser, before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

#: The address and port the server listens on (port 0: any free one).
HOST, PORT = "127.0.0.1", 8000
#: Concurrent ``/predict`` requests run as one batch, up to this many (1: no batching), and
#: how long (ms) a request waits for others to batch with
#: (:class:`~personkit.serve.batching.Batcher`).
MAX_BATCH, MAX_WAIT_MS = 8, 5.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (``personkit serve --max-...``).

    Attributes:
        max_pixels: the most pixels an uploaded image may declare (40 MP: a 7700×5200 photo).
        max_boxes: the most person boxes one image may carry (given or detected).
        max_concurrency: requests worked on at once (decoding, detecting, predicting,
            searching); ``max_queue`` more may wait, further ones get 503.
        max_upload_mb: the largest request body.
    """

    max_pixels: int = 40_000_000
    max_boxes: int = 256
    max_concurrency: int = 8
    max_queue: int = 16
    max_upload_mb: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_boxes", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_queue < 0 or self.max_upload_mb <= 0:
            raise ValueError(f"max_queue must be >= 0 and max_upload_mb > 0, got "
                             f"{self.max_queue} and {self.max_upload_mb}")
