"""Inputs and outputs of ``personkit track``.

Inputs (each frame: number, RGB image, detections):

* a MOT Challenge sequence folder: ``img1/000001.jpg, ...`` (``imDir`` of ``seqinfo.ini``) and
  ``det/det.txt`` (else ``gt/gt.txt``). Frames must be numbered 1..N without gaps (N is
  ``seqLength`` when ``seqinfo.ini`` gives it);
* a video file (decoded with PyAV) and a detections file in the same MOT format, whose frame
  numbers count decoded frames from 1;
* with a detector (``--detector``, :mod:`personkit.inference.detectors`): a video, a MOT
  sequence's images (its ``det.txt`` unread) or a folder of frames (sorted by name), the
  people found in each frame as it is read.

Detection rows are ``frame,id,left,top,width,height,score[,...]`` (1-based pixels, as
MOT16), parsed by the same reader as ``personkit predict`` (:mod:`personkit.data.mot`). A row
that is not numbers, has fewer than 7 columns, a frame below 1 or a non-finite value is an
error naming the file and line; so is a box without area (``predict`` skips those, a tracker
cannot follow them).

Frame rates are kept exact (``frameRate=12.5`` in ``seqinfo.ini``, a video's 25/2 or
30000/1001), and every frame gets a time in seconds from the source's first frame: ``(t - 1) /
rate`` for a MOT sequence or a folder of frames; for a video or a stream, the frame's
presentation timestamp relative to the first frame's (:class:`~personkit.track.live.FrameClock`).
Those seconds are placed in time by the source's start (:meth:`TrackSource.clock`): a given
start time, else a video's ``creation_time`` metadata, else the file's or folder's modification
time; for a camera or a stream the wall clock when its first frame was read.

A frame that cannot be read or decoded (a truncated video, a broken image) raises
:class:`FrameError` from the source's iterator, naming the source and the frame; ``personkit
track`` then ends the run there and writes what it tracked before it.

Outputs: an H.264 mp4 (PyAV) or PNG frames (MOT Challenge results:
:func:`personkit.data.mot.write_mot_results`).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from personkit.data.io import read_image
from personkit.data.mot import (
    Detections,
    exact_rate,
    is_mot_sequence,
    mot_images,
    read_detections,
    resolve_mot_source,
    seqinfo_frame_rate,
)
from personkit.data.times import container_time, parse_time
from personkit.data.urls import strip_credentials
from personkit.inference.sources import check_name, open_frames
from personkit.track.live import FrameClock, LiveFrames, is_live

#: The frame rate of a folder of frames (a tracker's motion model needs one).
FRAME_RATE = 30

T = TypeVar("T")
_END = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced by a thread of their own, at most ``depth`` ahead of the consumer,
    so that reading and detecting the next frames overlaps the network and the tracker on
    this one (issue 38; the engines release the GIL). An exception of the producer (a
    :class:`FrameError`) is raised where it happened in the sequence; closing the iterator
    (the consumer stops early, Ctrl-C) stops the producer, which closes ``items`` in its
    own thread."""
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((item, None)):
                    break
            else:
                put((_END, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((_END, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="personkit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = out.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)


class FrameError(ValueError):
    """A frame of a source that cannot be read or decoded (naming the source and ``frame``,
    1-based): the source ends there."""

    def __init__(self, message: str, frame: int):
        super().__init__(message)
        self.frame = frame


@dataclass
class TrackSource:
    """Frames of a MOT sequence or a video, with their detections."""

    name: str
    detections: Detections | None  # None: the detector finds the people
    frame_rate: float  # exact (an int when whole: exact_rate)
    length: int | None
    seq_dir: Path | None = None
    video: Path | None = None
    image_paths: list[Path] | None = None
    detector: Any = None
    live: Any = None  # a LiveFrames (personkit.track.live): a camera or a stream
    #: wall seconds spent reading frames and detecting people, by the last iteration
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "detect": 0.0})
    start: datetime | None = None  # when the first frame was captured (UTC), if known
    time_source: str = ""  # how start was found (personkit.data.times.TIME_SOURCES)

    def __len__(self) -> int:
        return self.length or 0

    def clock(self) -> tuple[datetime | None, str]:
        """When the first frame was captured and how that is known: a live source's wall
        clock when its first frame was read (None before), else :attr:`start`."""
        if self.live is not None:
            started = getattr(self.live, "started", None)
            return (None, "") if started is None else (
                datetime.fromtimestamp(started, UTC), "wall_clock")
        return self.start, self.time_source

    def frames(self) -> Iterator[tuple[int, np.ndarray, float]]:
        """``(frame number, RGB image, seconds from the first frame)`` per frame (module
        docstring); a frame that cannot be read or decoded raises :class:`FrameError`."""
        if self.live is not None:
            return self.live.timed()
        if self.video:
            return _video_frames(self.video, self.frame_rate)
        return _image_frames(self.image_paths or [], self.frame_rate)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]]:
        """``(frame number, RGB image, N×4 boxes, N scores, seconds)`` per frame (seconds
        from the first frame, as :meth:`frames`). A box with no area inside its frame (real
        ``det.txt`` files hold some) is left out and described, with its file and line, in
        :attr:`skipped`."""
        from personkit.inference.run import usable_boxes

        self.skipped: list[str] = []
        self.seconds = {"decode": 0.0, "detect": 0.0}  # this iteration's
        frames, clock = iter(self.frames()), time.perf_counter()
        for t, image, seconds in frames:
            self.seconds["decode"] += time.perf_counter() - clock
            if self.detections is None:  # clipped, finite, above the detector's threshold
                start = time.perf_counter()
                found = self.detector.detect([image])[0]
                self.seconds["detect"] += time.perf_counter() - start
                yield (t, image, found[:, :4].astype(np.float64), found[:, 4].astype(np.float64),
                       seconds)
                clock = time.perf_counter()
                continue
            boxes, scores = self.detections.frame(t)
            ok = usable_boxes(boxes, image.shape[1], image.shape[0])
            lines = self.detections.lines.get(t, np.zeros(len(boxes), np.int64))
            self.skipped += [f"{self.detections.path}:{int(lines[i])}: box "
                             f"{np.round(boxes[i], 1).tolist()} has no area inside the "
                             f"{image.shape[1]}×{image.shape[0]} frame {t}"
                             for i in np.flatnonzero(~ok)]
            yield t, image, boxes[ok], scores[ok], seconds
            clock = time.perf_counter()


def open_mot_sequence(seq_dir: str | Path, source: str = "auto",
                      detector: Any = None) -> TrackSource:
    """A MOT sequence folder; frames missing from ``img1/`` and detections beyond the last
    frame are errors naming them (:func:`~personkit.data.mot.mot_images`). With a
    ``detector``, its detections replace ``det.txt``."""
    seq_dir = Path(seq_dir)
    info, im_dir, images = mot_images(seq_dir)
    rate = seqinfo_frame_rate(seq_dir, info)
    seq_name = check_name(info.get("name", seq_dir.name), seq_dir,
                          "rename the folder or give seqinfo.ini a name= in UTF-8")
    if detector is not None:
        return TrackSource(seq_name, None, rate, len(images), seq_dir=seq_dir,
                           image_paths=images, detector=detector)
    name = resolve_mot_source(seq_dir, source)
    dets = read_detections(seq_dir / name / f"{name}.txt", name == "gt", len(images), im_dir)
    return TrackSource(seq_name, dets, rate, len(images), seq_dir=seq_dir, image_paths=images)


def open_video(path: str | Path, detections: str | Path | None,
               detector: Any = None) -> TrackSource:
    """A video file (PyAV) with a MOT-format detections file, or a ``detector``.

    Raises:
        ValueError: the file cannot be opened or decoded as a video (naming it).
    """
    from personkit.extras import require

    av = require("av")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    check_name(path.stem, path, "rename the file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = exact_rate(stream.average_rate or 30)  # a Fraction: 25/2, 30000/1001, ...
            length = stream.frames or None
            made = _creation_time(container)
            next(container.decode(video=0))  # fails now, not halfway through a run
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as e:
        raise ValueError(f"cannot decode video {path}: {e or 'no frames'}") from None
    dets = None if detector is not None else read_detections(detections)
    return TrackSource(path.stem, dets, rate, length, video=path, detector=detector,
                       start=made, time_source="creation_time" if made else "")


def _video_frames(path: Path, rate: float) -> Iterator[tuple[int, np.ndarray, float]]:
    """A video's frames with their times (PTS, :class:`~personkit.track.live.FrameClock`); a
    frame that cannot be decoded is a :class:`FrameError` naming the file and the frame."""
    import av

    clock, n = FrameClock(rate), 0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                n += 1
                yield n, frame.to_ndarray(format="rgb24"), clock(n, frame.time)
    except (av.error.FFmpegError, OSError) as e:
        raise FrameError(f"cannot decode video {path} at frame {n + 1}: {e}", n + 1) from None


def _image_frames(paths: list[Path], rate: float) -> Iterator[tuple[int, np.ndarray, float]]:
    """Image files as frames ``1..N`` at ``(t - 1) / rate`` seconds; an image that cannot be
    read is a :class:`FrameError` naming it."""
    for t, path in enumerate(paths, start=1):
        try:
            image = read_image(path)
        except (ValueError, OSError) as e:
            raise FrameError(f"cannot read frame {t}: {e}", t) from None
        yield t, image, round((t - 1) / rate, 6)


def start_of(src: TrackSource, given: str | datetime | None = None) -> TrackSource:
    """``src`` with its start time (:attr:`TrackSource.start`) and how it was found: ``given``
    (``--start-time``: ISO-8601, UTC without a zone), else a video's ``creation_time``
    metadata (read when it was opened), else the modification time of the video file, the
    sequence folder or the folder of frames.

    Raises:
        ValueError: an unreadable ``given`` time, naming it.
    """
    if given is not None and given != "":
        src.start = parse_time(given, "--start-time", relative=False)
        src.time_source = "start_time"
    elif src.start is None:
        path = src.video or src.seq_dir or (src.image_paths[0].parent if src.image_paths
                                            else None)
        if path is not None:
            src.start = datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)
            src.time_source = "mtime"
    return src


def _creation_time(container: Any) -> datetime | None:
    """A video's ``creation_time`` container (or video stream) metadata, when it has a real
    one (:func:`~personkit.data.times.container_time`)."""
    tags = [container.metadata, *(s.metadata for s in container.streams.video[:1])]
    return next((t for tag in tags if (t := container_time(tag.get("creation_time")))), None)


def open_track_source(path: str | Path, detections: str | Path | None = None,
                      mot_source: str = "auto", detector: Any = None,
                      start_time: str | datetime | None = None) -> TrackSource:
    """A MOT sequence folder, or a video file with ``detections``; with a ``detector``, also
    a folder of frames (:data:`FRAME_RATE` frames/s), a camera or a stream (in real time:
    :mod:`personkit.track.live`). A file's or folder's frames are placed in time by
    :func:`start_of` (``start_time``: ``--start-time``); a live source's by the wall clock."""
    if detector is not None and detections is not None:
        raise ValueError("give --detections or --detector, not both")
    if is_live(path):
        if detector is None:
            raise ValueError(f"live source {path} needs a detector (--detector)")
        if start_time:
            raise ValueError(f"--start-time {start_time}: a live source's times are the wall "
                             f"clock's when its frames arrive; --start-time is for files")
        live = LiveFrames(str(path))
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_",
                      strip_credentials(str(path)).split("://")[-1]).strip("_")
        return TrackSource(name or "live", None, live.frame_rate, None, detector=detector,
                           live=live)
    if start_time:  # an unreadable time is told before the source is opened
        parse_time(start_time, "--start-time", relative=False)
    return start_of(_open_file_source(Path(path), detections, mot_source, detector), start_time)


def _open_file_source(path: Path, detections: str | Path | None, mot_source: str,
                      detector: Any) -> TrackSource:
    """:func:`open_track_source` for a path: a sequence, a folder of frames or a video."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        if detector is not None and not is_mot_sequence(path):
            images = [f.path for f in open_frames(path)]  # the folder's images, or an error
            return TrackSource(check_name(path.name, path, "rename the folder"), None,
                               FRAME_RATE, len(images), image_paths=images, detector=detector)
        return open_mot_sequence(path, mot_source, detector)
    if detections is None and detector is None:
        raise ValueError(f"video input {path} needs people: a detections file (--detections, "
                         f"MOT det.txt format) or a detector (--detector)")
    return open_video(path, detections, detector)


def stream_rate(frame_rate: float | Fraction) -> int | Fraction:
    """A frame rate for PyAV's ``add_stream``: a whole number as an ``int``, else the nearest
    fraction with a denominator up to 1001 (12.5 -> 25/2, 29.97002997... -> 30000/1001)."""
    rate = Fraction(frame_rate).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {frame_rate}")
    return int(rate) if rate.denominator == 1 else rate


class VideoWriter:
    """H.264 mp4 frames with PyAV (frame size padded to even numbers for yuv420p), at
    ``frame_rate`` frames/s, fractional rates kept (:func:`stream_rate`)."""

    def __init__(self, path: str | Path, frame_rate: float | Fraction):
        from personkit.extras import require

        self.av = require("av")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = stream_rate(frame_rate)
        self._container = None
        self._stream = None

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self._container is None:
            self._container = self.av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=self.rate)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
        padded = np.pad(rgb, ((0, self._stream.height - h), (0, self._stream.width - w), (0, 0)),
                        mode="edge")
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
