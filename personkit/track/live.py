"""Live sources for ``personkit track``: cameras (``/dev/videoN``, FFmpeg's v4l2 input) and
network streams (``rtsp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``rtmp://``, ``srt://``),
decoded with PyAV.

A live source runs in real time: a reader thread decodes frames into a bounded queue and, when
the consumer (detector, network, tracker) is slower than the stream, the oldest waiting frame
is dropped so that the newest wins; dropped frames are counted (:attr:`LiveFrames.dropped`)
and frame numbers count every decoded frame, so the results' frame numbers show the gaps. A
stream that ends, fails or stalls (no frame for ``timeout`` seconds) ends the run cleanly: what
was tracked so far is written, and :attr:`LiveFrames.end` says why. Files run every frame
(:mod:`personkit.track.io`).

Every frame gets a time in seconds from the source's first frame (:class:`FrameClock`): its
presentation timestamp (PyAV's ``frame.time``, PTS × time base) relative to the first frame's,
or ``(n - 1) / rate`` for a frame without one. The wall clock when the first frame was read
(:attr:`RealtimeFrames.started`) places them in time: a frame was captured at ``started`` plus
its seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.mot import exact_rate
from personkit.data.urls import redact
from personkit.extras import require

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://",
                   "srt://")
#: Seconds to open a source, and without a new frame before a stream counts as stalled.
TIMEOUT = 10.0


def is_live(source: str | Path) -> bool:
    """A camera device or a network stream (not a file)."""
    text = str(source)
    return text.startswith(STREAM_PREFIXES) or text.startswith("/dev/video")


class FrameClock:
    """Seconds from a source's first frame for frame ``n`` (1-based, counting every decoded
    frame) with presentation time ``pts`` in seconds (PyAV's ``frame.time``; None when the
    frame has none): the PTS relative to the first timed frame's, placed at ``(n - 1) / rate``
    (so the first frame is at 0), else ``(n - 1) / rate``; rounded to microseconds."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.origin: float | None = None

    def __call__(self, n: int, pts: float | None = None) -> float:
        if pts is None:
            return round((n - 1) / self.rate, 6)
        if self.origin is None:
            self.origin = float(pts) - (n - 1) / self.rate
        return round(float(pts) - self.origin, 6)


@dataclass
class _End:
    """The reader's last item: why the source ended."""

    reason: str


class RealtimeFrames:
    """``(frame number, RGB image)`` of ``frames``, read by a thread in real time: newest first
    when the consumer lags, drops counted (module docstring); :meth:`timed` adds each frame's
    time (:class:`FrameClock`).

    Args:
        frames: the images, as the source gives them, or ``(image, pts seconds or None)``
            pairs (an error it raises as ``OSError`` ends the source, naming it).
        frame_rate: the source's frames per second (fractional rates kept).
        timeout: seconds without a frame before the source counts as stalled.
        queue_size: frames that may wait for the consumer (1: always the newest).
    """

    def __init__(self, frames: Iterable[Any], frame_rate: float, timeout: float = TIMEOUT,
                 queue_size: int = 1):
        self.frame_rate, self.timeout = exact_rate(frame_rate), float(timeout)
        self._clock = FrameClock(self.frame_rate)
        self.dropped = self.decoded = 0
        self.started: float | None = None  # the wall clock (time.time()) at the first frame
        self.end = ""
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="personkit-live", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        reason = "the stream ended"
        try:
            for item in self._frames:
                if self._stop.is_set():
                    reason = "stopped"
                    break
                if self.started is None:
                    self.started = time.time()
                self.decoded += 1
                image, pts = item if isinstance(item, tuple) else (item, None)
                self._offer((self.decoded, image, self._clock(self.decoded, pts)))
        except OSError as e:
            reason = f"the stream failed: {e}"
        finally:
            if hasattr(self._frames, "close"):  # a generator: release its source now
                self._frames.close()
            self._queue.put(_End(reason))  # waits for the consumer: no frame is lost for it

    def _offer(self, item: tuple[int, np.ndarray, float]) -> None:
        """Put a frame; when the queue is full, the oldest waiting frame makes room (counted)."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for n, image, _ in self.timed():
            yield n, image

    def timed(self) -> Iterator[tuple[int, np.ndarray, float]]:
        """``(frame number, RGB image, seconds from the first frame)`` per frame kept."""
        while True:
            try:
                item = self._queue.get(timeout=self.timeout)
            except queue.Empty:
                self.end = f"no frame for {self.timeout:g} s (stalled)"
                self.close()
                return
            if isinstance(item, _End):
                self.end = item.reason
                return
            yield item

    def close(self) -> None:
        """Stop reading (the reader thread ends at its next frame or timeout)."""
        self._stop.set()

    def summary(self) -> dict[str, Any]:
        """Decoded and dropped frames and why the source ended."""
        return {"live": True, "decoded_frames": self.decoded, "dropped_frames": self.dropped,
                "drop_rate": self.dropped / max(1, self.decoded), "end": self.end}


class LiveFrames(RealtimeFrames):
    """A camera or a network stream (PyAV) as :class:`RealtimeFrames`.

    Args:
        url: a stream URL or a camera device (``/dev/video0``).
        timeout: seconds to open, and without a frame before the stream counts as stalled.
        queue_size: frames that may wait for the consumer (1: always the newest).

    Raises:
        FileNotFoundError: a camera device that does not exist.
        ValueError: a source that cannot be opened or holds no video (naming it).
    """

    def __init__(self, url: str, timeout: float = TIMEOUT, queue_size: int = 1):
        self.av = require("av")
        self.url = str(url)
        if self.url.startswith("/dev/") and not Path(self.url).exists():
            raise FileNotFoundError(f"camera not found: {self.url}")
        container = self._open(timeout)
        rate = exact_rate(container.streams.video[0].average_rate or 25)
        super().__init__(self._decode(container), rate, timeout, queue_size)

    def _open(self, timeout: float) -> Any:
        options = {"rtsp_transport": "tcp"} if self.url.startswith("rtsp") else {}
        fmt = "v4l2" if self.url.startswith("/dev/video") else None
        try:
            container = self.av.open(self.url, format=fmt, options=options,
                                     timeout=(timeout, timeout))
        except (self.av.error.FFmpegError, OSError) as e:
            raise ValueError(f"cannot open live source {redact(self.url)}: "
                             f"{redact(str(e))}") from None
        if not container.streams.video:
            container.close()
            raise ValueError(f"{redact(self.url)}: no video stream")
        return container

    def _decode(self, container: Any) -> Iterator[tuple[np.ndarray, float | None]]:
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24"), frame.time
        except self.av.error.FFmpegError as e:
            raise OSError(str(e)) from None
        finally:
            container.close()
