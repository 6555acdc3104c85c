"""Live cameras in the service (``personkit serve --camera NAME=SOURCE``, issue 36): every
camera followed in a worker thread of its own (decode, detector, the four-task network,
tracker) while the same process serves search and the page.

* **One network for every camera.** A worker's tracker runs the network through
  :class:`SharedNetwork`, which submits each frame's people to the service's batcher
  (:mod:`personkit.serve.batching`): the people of all cameras, and of ``/predict``
  requests, share forward passes.
* **Entries as tracks grow.** A track is written to the index when it ends (its tracker lost
  it for longer than its buffer, :mod:`personkit.track.stream`) and, while it runs, again
  every ``checkpoint_seconds`` when it has grown (embedding, attributes, span, best view):
  a person in view is searchable within about that long. One
  :class:`~personkit.index.live.Committer` writes for every camera, by entry id.
* **Health.** :meth:`CameraWorker.status`: ``state`` (``connecting``, ``running``,
  ``reconnecting``, ``failed``, ``ended``), frames tracked, read and dropped, frames/s,
  reconnects, the last frame's capture time, the error (passwords hidden), tracks running,
  entries committed, timestamp jumps. A stream that ends, fails or stalls is opened again
  after :data:`~personkit.serve.settings.RECONNECT_SECONDS` (doubled per failed try, capped),
  forever unless the camera has ``retries``; a camera that never connects is ``failed``
  (and still retried) while the others run; a file or folder is tracked once, then
  ``ended``.
* **Stopping.** :meth:`Ingest.stop` (SIGTERM, Ctrl-C) ends every running track and writes
  it before the process exits; a kill loses at most each running track's last
  ``checkpoint_seconds`` (and tracks younger than that), and the entries queued in the last
  :data:`~personkit.index.live.FLUSH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.mot import is_mot_sequence
from personkit.data.times import iso, seen_at
from personkit.data.urls import redact, strip_credentials
from personkit.index.live import Committer, LiveRecording, open_recording
from personkit.index.people import PeopleIndex
from personkit.inference.predictor import PredictionStopped, Predictor
from personkit.serve.batching import Batcher, BatcherBusy, BatcherStopped
from personkit.serve.settings import CHECKPOINT_SECONDS, RECONNECT_SECONDS, CameraSpec
from personkit.track.io import FrameError, TrackSource, open_track_source, prefetched
from personkit.track.live import is_live
from personkit.track.stream import CaptureClock, LiveTracks, TrackSnapshot
from personkit.track.tracker import Tracker

#: Camera states, in the order a camera usually passes them.
STATES = ("connecting", "running", "reconnecting", "failed", "ended")
#: Seconds a stopping service waits for a worker to finish its frame before it takes the
#: worker's running tracks itself.
STOP_SECONDS = 3.0


class SharedNetwork:
    """The served predictor as camera workers see it: :meth:`predict` goes through the
    service's :class:`~personkit.serve.batching.Batcher` on its event loop ``loop``; every
    other attribute is the predictor's."""

    def __init__(self, predictor: Predictor, batcher: Batcher,
                 loop: asyncio.AbstractEventLoop):
        self.predictor, self.batcher, self.loop = predictor, batcher, loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict(self, image: np.ndarray, boxes: Any) -> list[Any]:
        future = asyncio.run_coroutine_threadsafe(
            self.batcher.submit((image, np.asarray(boxes, np.float64))), self.loop)
        return future.result()


def needs_detector(source: str) -> bool:
    """Whether a camera's source has no people of its own: a stream, a camera device, a
    video file or a folder of frames (a MOT sequence has ``det.txt``)."""
    path = Path(source)
    return is_live(source) or path.is_file() or (path.is_dir() and not is_mot_sequence(path))


def shown_source(source: str) -> str:
    """A camera's source as ``/cameras`` shows it: a stream's address without its user and
    password, a file's or folder's name (not the server's path)."""
    return strip_credentials(source) if "://" in source else Path(source).name


class CameraWorker:
    """One camera followed in a thread of its own (module docstring); :meth:`status` is its
    health. ``network`` and ``committer`` are set by :meth:`Ingest.start`."""

    def __init__(self, spec: CameraSpec, detector: Any, index: PeopleIndex,
                 checkpoint_seconds: float = CHECKPOINT_SECONDS,
                 reconnect: tuple[float, float] = RECONNECT_SECONDS):
        self.spec, self.detector, self.index = spec, detector, index
        self.checkpoint_seconds, self.reconnect = float(checkpoint_seconds), reconnect
        self.live = is_live(spec.source)
        self.network: Any = None
        self.committer: Committer | None = None
        self.state, self.error = "connecting", ""
        self.connections = self.reconnects = self.frames = self.skipped = 0
        self._read = self._dropped = self._jumps = 0  # of the connections before this one
        self.last_frame_time: str | None = None
        self.recording: LiveRecording | None = None
        self.taken: list[str] = []  # recordings this worker made
        self.src: TrackSource | None = None
        self.tracks: LiveTracks | None = None
        self.clock: CaptureClock | None = None
        self._ticks: deque[float] = deque(maxlen=64)  # monotonic times of the last frames
        self.lock = threading.RLock()  # the running tracks: the worker's and stop()'s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"personkit-camera-{spec.name}",
                                       daemon=True)

    # ------------------------------------------------------------------ the worker's loop

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                src = open_track_source(self.spec.source, detector=self.detector,
                                        start_time=self.spec.start_time)
            except Exception as e:  # unreachable, missing, not a video: say so, try again
                failures += 1
                if not self._retry(_message(e), failures, opened=False):
                    return
                continue
            try:
                frames, why = self._follow(src)
            except (BatcherStopped, PredictionStopped):
                return  # the service is stopping: stop() takes the running tracks
            except Exception as e:  # the network, tracker or store failed: the camera goes on
                print(f"personkit serve: camera {self.spec.name}: {_message(e)}",
                      file=sys.stderr, flush=True)
                frames, why = 0, f"error: {_message(e)}"
            finally:
                self._end_connection()
            if self._stop.is_set():
                return
            failures = 0 if frames else failures + 1
            if not self._retry(why, max(failures, 1), opened=True):
                return

    def _retry(self, why: str, failures: int, opened: bool) -> bool:
        """After a connection ended (``opened``) or failed to open: the new state, then wait
        the backoff; False when the camera is done (a file, retries spent, stopping)."""
        if not self.live:
            self._set("ended" if opened and not why.startswith("error") else "failed",
                      "" if opened and not why.startswith("error") else why)
            return False
        if self.spec.retries is not None and failures > self.spec.retries:
            self._set("failed", f"{why} (gave up after {failures} tries)")
            return False
        delay = min(self.reconnect[1], self.reconnect[0] * 2 ** (failures - 1))
        self._set("reconnecting" if self.connections else "failed", why,
                  f"; trying again in {delay:g} s")
        self.reconnects += 1
        return not self._stop.wait(delay)

    def _set(self, state: str, error: str = "", retry: str = "") -> None:
        if (state, error) != (self.state, self.error):
            what = f": {error}{retry}" if error else ""
            print(f"personkit serve: camera {self.spec.name}: {state}{what}", file=sys.stderr,
                  flush=True)
        self.state, self.error = state, error

    def _follow(self, src: TrackSource) -> tuple[int, str]:
        """Track ``src`` until it ends or the worker stops: frames tracked and why it ended."""
        tracker = Tracker(self.network, self.spec.tracker, "personkit",
                          frame_rate=src.frame_rate)
        with self.lock:
            self.src, self.tracks, self.recording = src, LiveTracks(tracker), None
            self.clock = CaptureClock(src.frame_rate)
        self.connections += 1
        frames, checkpoint, ended = 0, time.monotonic(), ""
        try:  # the next frames read and their people detected meanwhile (issue 38)
            with closing(prefetched(src)) as read:
                for t, image, boxes, scores, seconds in read:
                    if self._stop.is_set():
                        break
                    if self._frame(src, t, image, boxes, scores, seconds):
                        frames += 1
                    if time.monotonic() - checkpoint >= self.checkpoint_seconds:
                        checkpoint = time.monotonic()
                        with self.lock:
                            changed = self.tracks.take_changed() if self.tracks else []
                        self._commit(changed, ended=False)
        except FrameError as e:
            ended = f"error: {_message(e)}"
        return frames, ended or (src.live.end if src.live is not None else "the file ended")

    def _frame(self, src: TrackSource, t: int, image: np.ndarray, boxes: np.ndarray,
               scores: np.ndarray, seconds: float) -> bool:
        """One frame tracked (False: skipped, the network's queue full); ended tracks
        committed."""
        if self.recording is None:
            self._begin(src)
        started = src.live.started if src.live is not None else None
        assert self.clock is not None and self.tracks is not None and self.recording
        at = self.clock(seconds, None if started is None else time.time() - started)
        try:
            with self.lock:
                self.tracks.update(image, boxes, scores, t, at)
                done = self.tracks.take_ended()
        except BatcherBusy:
            self.skipped += 1
            return False
        self.frames += 1
        self._ticks.append(time.monotonic())
        self.last_frame_time = seen_at(self.recording.start, at)
        self._commit(done, ended=True)
        return True

    def _begin(self, src: TrackSource) -> None:
        """The connection's first frame: its recording (:func:`open_recording`)."""
        start, time_source = src.clock()
        self.recording = open_recording(self.index, self.spec.name, self.spec.source, start,
                                        time_source, self.taken)
        self.taken.append(self.recording.recording)
        self._set("running")
        print(f"personkit serve: camera {self.spec.name}: recording "
              f"{self.recording.recording!r} from "
              f"{iso(start) if start else 'an unknown start'}", file=sys.stderr, flush=True)

    def _commit(self, snaps: Sequence[TrackSnapshot], ended: bool) -> None:
        if not snaps or self.recording is None or self.committer is None:
            return
        attributes = list(self.index.info.attributes)
        entries = [e for s in snaps if (e := self.recording.entry(s, attributes)) is not None]
        self.committer.put(entries, ended)

    def _end_connection(self) -> None:
        """Every running track of the connection ended and committed; its counts kept."""
        with self.lock:
            snaps = self.tracks.take_all() if self.tracks is not None else []
            self._commit(snaps, ended=True)
            src, clock = self.src, self.clock
            if src is not None and src.live is not None:
                src.live.close()
                self._read += src.live.decoded
                self._dropped += src.live.dropped
            self._jumps += clock.jumps if clock is not None else 0
            self.src, self.tracks, self.clock = None, None, None

    # ------------------------------------------------------------------ control, health

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the worker to stop (a live source stops reading at once)."""
        self._stop.set()
        src = self.src
        if src is not None and src.live is not None:
            src.live.close()

    def finish(self) -> None:
        """After :meth:`stop`: the running tracks ended and committed (by this thread when
        the worker is still busy), the camera ``ended``."""
        if self.lock.acquire(timeout=STOP_SECONDS):
            try:
                if self.tracks is not None:
                    self._commit(self.tracks.take_all(), ended=True)
            finally:
                self.lock.release()
        if self.state not in ("failed",):
            self._set("ended")

    def status(self) -> dict[str, Any]:
        """The camera's health (module docstring)."""
        src, tracks, clock = self.src, self.tracks, self.clock
        live = src.live if src is not None else None
        ticks = list(self._ticks)
        recent = [t for t in ticks if t >= time.monotonic() - 10.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and \
            recent[-1] > recent[0] else 0.0
        committed = self.committer.committed[self.spec.name] if self.committer else 0
        return {"name": self.spec.name, "live": True, "source": shown_source(self.spec.source),
                "state": self.state, "error": self.error or None, "frames": self.frames,
                "frames_read": self._read + (live.decoded if live else 0) if self.live
                else self.frames,
                "dropped": self._dropped + (live.dropped if live else 0) + self.skipped,
                "fps": round(fps, 2), "reconnects": self.reconnects,
                "last_frame_time": self.last_frame_time,
                "recording": self.recording.recording if self.recording else None,
                "tracks_live": len(tracks.seen) if tracks is not None else 0,
                "committed": committed,
                "time_jumps": self._jumps + (clock.jumps if clock is not None else 0)}


def _message(e: BaseException) -> str:
    """An exception as a camera's error: its text, passwords hidden."""
    return redact(str(e) or type(e).__name__)


class Ingest:
    """Every live camera of the service: one :class:`CameraWorker` each and one
    :class:`~personkit.index.live.Committer`.

    Args:
        cameras: each camera and its opened person detector (None: it needs none, a MOT
            sequence with ``det.txt``).
        predictor: the served network (ReID and attribute heads needed).
        index: where the people go.

    Raises:
        ValueError: no index, a network without those heads, a camera whose source needs a
            detector without one (naming it).
    """

    def __init__(self, cameras: Sequence[tuple[CameraSpec, Any]], predictor: Predictor,
                 index: PeopleIndex | None, checkpoint_seconds: float = CHECKPOINT_SECONDS,
                 reconnect: tuple[float, float] = RECONNECT_SECONDS):
        if index is None:
            raise ValueError("live cameras need an index to put their people in: give --index")
        missing = {"reid", "attributes"} - set(predictor.heads)
        if missing:
            raise ValueError(f"live cameras need the network's reid and attributes heads; "
                             f"{', '.join(sorted(missing))} is off (--heads)")
        if checkpoint_seconds <= 0:
            raise ValueError(f"--checkpoint-seconds must be > 0, got {checkpoint_seconds}")
        for spec, detector in cameras:
            if spec.start_time and is_live(spec.source):
                raise ValueError(f"camera {spec.name!r}: start_time {spec.start_time}: a "
                                 f"stream's times are the wall clock's; start_time is for "
                                 f"files and folders")
            if detector is None and needs_detector(spec.source):
                raise ValueError(f"camera {spec.name!r}: {redact(spec.source)} has no people "
                                 f"of its own: give a person detector (--detector, or "
                                 f"detector: in --cameras FILE)")
        self.index = index
        self.workers = [CameraWorker(spec, detector, index, checkpoint_seconds, reconnect)
                        for spec, detector in cameras]
        self.committer: Committer | None = None

    def start(self, network: Any) -> None:
        """Start every worker, their network ``network`` (a :class:`SharedNetwork`)."""
        if self.committer is not None:
            return
        self.committer = Committer(self.index)
        for w in self.workers:
            w.network, w.committer = network, self.committer
            w.start()

    def status(self) -> list[dict[str, Any]]:
        return [w.status() for w in self.workers]

    def stop(self) -> None:
        """Stop every worker, commit every running track, write everything queued."""
        for w in self.workers:
            w.stop()
        deadline = time.monotonic() + STOP_SECONDS
        for w in self.workers:
            if w.thread.is_alive():
                w.thread.join(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.finish()
        if self.committer is not None:
            self.committer.close()


def open_served_index(path: str | Path | None, predictor: Predictor,
                      live: bool) -> PeopleIndex | None:
    """The index ``personkit serve --index`` names: opened, or with live cameras
    (``live``) created for ``predictor``'s model when missing."""
    if path is None:
        return None
    if not live:
        return PeopleIndex.open(path)
    from personkit.index.build import index_info

    model_path = str(predictor.path) if predictor.path is not None else None
    return PeopleIndex.create_or_open(path, index_info(predictor, model_path))


class CameraCollector:
    """The cameras' health in ``/metrics`` (a Prometheus collector, label ``camera``)."""

    NUMBERS = {"frames": ("counter", "frames tracked"),
               "frames_read": ("counter", "frames read from the source"),
               "dropped": ("counter", "frames dropped to keep up"),
               "fps": ("gauge", "frames tracked per second (last 10 s)"),
               "reconnects": ("counter", "connections tried again"),
               "tracks_live": ("gauge", "tracks running"),
               "committed": ("counter", "ended tracks written to the index"),
               "time_jumps": ("counter", "jumps in the source's timestamps")}

    def __init__(self, ingest: Ingest):
        self.ingest = ingest

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self.ingest.status()
        for key, (kind, text) in self.NUMBERS.items():
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                f"personkit_camera_{key}", text, labels=["camera"])
            for s in status:
                family.add_metric([s["name"]], float(s[key]))
            yield family
        state = GaugeMetricFamily("personkit_camera_state", "1 for each camera's state",
                                  labels=["camera", "state"])
        for s in status:
            for name in STATES:
                state.add_metric([s["name"], name], float(s["state"] == name))
        yield state
