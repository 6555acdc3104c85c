"""Tracking that never finishes: one connection of a camera followed frame by frame, its
tracks taken as they grow and when they end (``personkit serve --camera``, issue 36).

:class:`LiveTracks` runs each frame through a :class:`~personkit.track.tracker.Tracker`
and keeps, per track, its best view (:class:`~personkit.track.run.BestViews`) and its times.
A track has *ended* when its tracker has not seen it for longer than its lost-track buffer
(BotSort's and ByteTrack's ``max_time_lost``, DeepOcSort's and OcSort's ``max_age``, in
tracker updates): the tracker has dropped it and no later frame can extend it. A
:class:`TrackSnapshot` is a track as it stands (merged attributes, mean embedding, span,
times, the best view as JPEG); an ended track's snapshot is its last, and the track is
forgotten once taken.

Memory stays bounded however long a source runs: ended tracks go, each observation keeps
only the embedding and attributes (no part map or joints), and a track longer than
:data:`MAX_OBSERVATIONS` frames drops every other observation (its first and last kept), so
its means stay those of frames spread evenly over its whole span.

:class:`CaptureClock` keeps a connection's times monotonic when its timestamps jump or go
backwards, and counts the jumps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from personkit.data.io import encode_jpeg
from personkit.inference.visualize import draw_thumbnail
from personkit.track.run import BestViews
from personkit.track.tracker import FrameTracks, Tracker

#: A track keeps at most this many observations (then every other one goes).
MAX_OBSERVATIONS = 2048
#: A step in a source's timestamps between two frames beyond this many seconds (or any step
#: back) is a jump (:class:`CaptureClock`).
JUMP_SECONDS = 5.0


@dataclass
class TrackSnapshot:
    """One track as it stands: ``first_time``/``last_time`` in seconds from the connection's
    first frame, ``attributes`` as :meth:`~personkit.track.merge.TrackSummary.attributes`
    merges them, ``embedding`` the mean of its L2-normalised embeddings (None without any),
    ``thumbnail`` its best view as JPEG, ``ended`` whether the track is over."""

    track_id: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    attributes: dict[str, dict[str, Any]]
    embedding: np.ndarray | None
    thumbnail: bytes | None
    ended: bool


def lost_frames(tracker: Tracker, default: int = 30) -> int:
    """How many tracker updates a track may go unseen before its BoxMOT tracker drops it."""
    inner = tracker._tracker  # the BoxMOT tracker Tracker wraps
    for name in ("max_time_lost", "max_age"):
        value = getattr(inner, name, None)
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return default


class LiveTracks:
    """The tracks of one connection (module docstring).

    Args:
        tracker: a fresh :class:`~personkit.track.tracker.Tracker` for the connection.
        lost: tracker updates a track may go unseen before it has ended (default: the
            tracker's own buffer, :func:`lost_frames`).
    """

    def __init__(self, tracker: Tracker, lost: int | None = None):
        self.tracker = tracker
        self.lost = lost_frames(tracker) if lost is None else int(lost)
        self.views = BestViews()
        self.times: dict[int, tuple[float, float]] = {}  # track -> first and last seconds
        self.seen: dict[int, int] = {}  # track -> tracker updates at its last observation
        self.changed: set[int] = set()  # tracks observed since their last snapshot
        self._thumbs: dict[int, tuple[Any, bytes]] = {}  # track -> (view key, JPEG)

    def update(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, frame: int,
               seconds: float) -> FrameTracks:
        """Track one frame (``seconds``: its time from the connection's first frame)."""
        ft = self.tracker.update(image, boxes, scores, frame=frame)
        self.views.update(image, ft)
        for tid in (int(t) for t in ft.track_ids):
            self.times[tid] = (self.times.get(tid, (seconds,))[0], seconds)
            self.seen[tid] = self.tracker.frames
            self.changed.add(tid)
            _slim(self.tracker.tracks[tid])
        return ft

    @property
    def running(self) -> list[int]:
        """The tracks not ended yet."""
        return sorted(self.seen)

    def ended(self) -> list[int]:
        """The tracks unseen for longer than the lost-track buffer."""
        now = self.tracker.frames
        return sorted(t for t, last in self.seen.items() if now - last > self.lost)

    def take(self, track_id: int, ended: bool = False) -> TrackSnapshot:
        """``track_id`` as it stands; with ``ended`` its last snapshot, and it is forgotten."""
        snap = self.snapshot(track_id, ended)
        self.changed.discard(track_id)
        if ended:
            for kept in (self.times, self.seen, self._thumbs, self.views.views,
                         self.views.keys, self.tracker.tracks):
                kept.pop(track_id, None)
        return snap

    def take_ended(self) -> list[TrackSnapshot]:
        """The last snapshots of the tracks that have ended, forgotten."""
        return [self.take(t, ended=True) for t in self.ended()]

    def take_changed(self) -> list[TrackSnapshot]:
        """Snapshots of the running tracks observed since their last one."""
        return [self.take(t) for t in sorted(self.changed) if t in self.seen]

    def take_all(self) -> list[TrackSnapshot]:
        """Every running track's last snapshot (the connection is over), all forgotten."""
        return [self.take(t, ended=True) for t in self.running]

    def snapshot(self, track_id: int, ended: bool = False) -> TrackSnapshot:
        summary = self.tracker.tracks[track_id]
        first, last = self.times[track_id]
        return TrackSnapshot(track_id, summary.first_frame, summary.last_frame, first, last,
                             summary.attributes(), summary.embedding(),
                             self._thumbnail(track_id), ended)

    def _thumbnail(self, track_id: int) -> bytes | None:
        """The best view as JPEG, encoded again only when a better view came."""
        if track_id not in self.views.views:
            return None
        key = self.views.keys[track_id]
        cached = self._thumbs.get(track_id)
        if cached is None or cached[0] != key:
            crop, result = self.views.views[track_id]
            cached = (key, encode_jpeg(draw_thumbnail(crop, result, overlays=False)))
            self._thumbs[track_id] = cached
        return cached[1]


def _slim(summary: Any) -> None:
    """A track's newest observation without its part map and joints; every other
    observation dropped when the track holds :data:`MAX_OBSERVATIONS` (first and last kept)."""
    ob = summary.observations[-1]
    if ob.result is not None and (ob.result.parts is not None or ob.result.keypoints is not None):
        ob.result = dataclasses.replace(ob.result, parts=None, parts_box=None, keypoints=None)
    if len(summary.observations) > MAX_OBSERVATIONS:
        summary.observations = summary.observations[:-1:2] + [summary.observations[-1]]


class CaptureClock:
    """A connection's frame times (seconds from its first frame) made monotonic.

    A step in the source's seconds that goes back, or forward by more than ``jump`` seconds
    (a camera's clock reset, a wrapped or re-based timestamp), counts in :attr:`jumps`; the
    times continue from the last one by one frame, or for a live source (``elapsed`` given:
    wall seconds since its first frame arrived) from the wall clock when that is later. Other
    steps are kept as the source gives them (a stream sent faster than real time keeps its
    own timestamps)."""

    def __init__(self, rate: float, jump: float = JUMP_SECONDS):
        self.step, self.jump = 1.0 / float(rate), float(jump)
        self.offset, self.jumps = 0.0, 0
        self._pts: float | None = None
        self.last: float | None = None

    def __call__(self, seconds: float, elapsed: float | None = None) -> float:
        seconds = float(seconds)
        if self._pts is None or self.last is None:
            self._pts = self.last = seconds
            return round(seconds, 6)
        delta, self._pts = seconds - self._pts, seconds
        if 0.0 <= delta <= self.jump:
            t = seconds + self.offset
        else:
            self.jumps += 1
            t = self.last + self.step if elapsed is None else max(self.last + self.step,
                                                                  float(elapsed))
            self.offset = t - seconds
        self.last = max(t, self.last)
        return round(self.last, 6)
