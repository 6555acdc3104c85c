"""Live tracks into an index (``personkit serve --camera``, issue 36): each connection of a
camera is a recording (:class:`LiveRecording`), each track an entry of it, written by one
:class:`Committer` for every camera.

Entry ids are ``CAMERA/RECORDING:TRACK``: stable for a track, unique for a connection (a
stream's recording is named by the time it connected, ``20260105T140000Z``; a file's is the
one its path already has in the index, :func:`~personkit.index.build.recording_for`).
Entries are written by id (:meth:`~personkit.index.people.PeopleIndex.upsert`): a running
track is written again as it grows, and whatever is written twice is there once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.times import iso, seen_at
from personkit.data.urls import redact, strip_credentials
from personkit.index.build import recording_for
from personkit.index.entries import Entry
from personkit.index.people import PeopleIndex
from personkit.inference.sources import shown_path
from personkit.runtime import exclusive
from personkit.track.live import is_live
from personkit.track.merge import l2_normalise
from personkit.track.stream import TrackSnapshot

#: How long the committer gathers entries into one write (seconds): a track that ended is
#: searchable about this long after its end was seen; every write is a table version.
FLUSH_SECONDS = 1.0
#: The committer folds small writes together (LanceDB's ``optimize``: compaction and old
#: versions removed) every this many seconds of writing.
COMPACT_SECONDS = 300.0


@dataclass(frozen=True)
class LiveRecording:
    """One connection of a camera (or one run through a file) as a recording of the index:
    ``start`` places its seconds in time (None: unknown), ``time_source`` says how."""

    camera: str
    recording: str
    origin: str
    start: datetime | None
    time_source: str

    def entry(self, snap: TrackSnapshot, attributes: Sequence[str]) -> Entry | None:
        """``snap`` as an entry of this recording; None for a track the network said nothing
        of (no embedding, no thumbnail or not every attribute of the index)."""
        if snap.embedding is None or snap.thumbnail is None or \
                not set(attributes) <= set(snap.attributes):
            return None
        attrs = {a: (str(v["label"]), float(v["confidence"]), v.get("positive"))
                 for a, v in snap.attributes.items() if a in attributes}
        return Entry(self.camera, snap.track_id, l2_normalise(np.asarray(snap.embedding)),
                     attrs, snap.thumbnail, snap.first_frame, snap.last_frame,
                     snap.first_time, snap.last_time, recording=self.recording,
                     origin=self.origin, first_seen=seen_at(self.start, snap.first_time),
                     last_seen=seen_at(self.start, snap.last_time),
                     time_source=self.time_source if self.start is not None else "")


def open_recording(index: PeopleIndex, camera: str, source: str, start: datetime | None,
                   time_source: str, taken: Sequence[str] = ()) -> LiveRecording:
    """The recording a connection to ``source`` (begun at ``start``) makes of ``camera``: for
    a stream a new one named by its start (``_2``, ... when taken), for a file or folder the
    one of its path (indexed again: its ids are written again, never doubled). ``taken``:
    recordings of the camera this process made that may have no entry yet."""
    if is_live(source):
        origin = f"{strip_credentials(source)} {iso(start) if start else ''}".strip()
        default = (start or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    else:
        origin, default = shown_path(Path(source).resolve()), camera
    known = [*index.store.recordings(),
             *({"camera": camera, "recording": r, "origin": None} for r in taken)]
    recording = recording_for(camera, origin, default, known)
    return LiveRecording(camera, recording, origin, start, time_source)


class Committer:
    """One writer of live entries for every camera: :meth:`put` queues them, a thread writes
    what gathered in :data:`FLUSH_SECONDS` as one :meth:`~PeopleIndex.upsert` (the newest of
    each id); a failed write is kept and tried again. :attr:`committed` counts the entries of
    ended tracks written, per camera; :meth:`close` writes what is left."""

    def __init__(self, index: PeopleIndex, flush_seconds: float = FLUSH_SECONDS,
                 compact_seconds: float | None = COMPACT_SECONDS):
        self.index, self.flush_seconds, self.compact_seconds = index, flush_seconds, \
            compact_seconds
        self.committed: Counter[str] = Counter()  # camera -> ended tracks' entries written
        self.written = self.writes = 0
        self.error = ""
        self._pending: dict[str, tuple[Entry, bool]] = {}
        self._forgotten: set[str] = set()  # ids never written again (forget)
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._compacted = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="personkit-committer",
                                        daemon=True)
        self._thread.start()

    def put(self, entries: Sequence[Entry], ended: bool) -> None:
        """Queue ``entries`` (``ended``: their tracks are over: the last write of each)."""
        if not entries:
            return
        with self._cond:
            for e in entries:
                if e.id in self._forgotten:
                    continue
                before = self._pending.get(e.id)
                self._pending[e.id] = (e, ended or (before is not None and before[1]))
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
                deadline = time.monotonic() + self.flush_seconds
                while not self._closing and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)  # gather more
                batch, self._pending, self._busy = self._pending, {}, True
            ok = self._write(batch)
            with self._cond:
                if not ok:
                    for key, item in batch.items():
                        self._pending.setdefault(key, item)  # a newer one stays newer
                self._busy = False
                self._cond.notify_all()
            if not ok:
                time.sleep(1.0 if not self._closing else 0.0)
                if self._closing:
                    return
            self._compact()

    def _write(self, batch: dict[str, tuple[Entry, bool]]) -> bool:
        try:
            self.index.upsert([e for e, _ in batch.values()])
        except Exception as e:  # the store failed: kept, tried again
            self.error = redact(f"{type(e).__name__}: {e}")
            print(f"personkit serve: writing {len(batch)} live entries failed ({self.error}); "
                  f"trying again", file=sys.stderr, flush=True)
            return False
        self.error = ""
        self.writes += 1
        self.written += len(batch)
        self.committed.update(e.source for e, ended in batch.values() if ended)
        return True

    def _compact(self) -> None:
        """LanceDB's ``optimize`` every :data:`COMPACT_SECONDS` (each write is a small file
        and a table version; searches read every file)."""
        if self.compact_seconds is None or \
                time.monotonic() - self._compacted < self.compact_seconds:
            return
        self._compacted = time.monotonic()
        optimize = getattr(self.index.store, "optimize", None)
        if optimize is None:
            return
        try:
            with exclusive(self.index.path / "index.lock", f"index {self.index.path}",
                           wait=True):
                optimize()
        except Exception as e:  # a later one may succeed; searches stay correct meanwhile
            print(f"personkit serve: compacting the index failed: {e}", file=sys.stderr,
                  flush=True)

    def forget(self, ids: Sequence[str], timeout: float = 30.0) -> None:
        """Never write the entries ``ids`` again (a person forgotten while a camera still
        tracks them): their queued writes are dropped, a write in progress ends first."""
        with self._cond:
            self._forgotten.update(ids)
            for i in ids:
                self._pending.pop(i, None)
            self._cond.wait_for(lambda: not self._busy, timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued is written (or ``timeout``); True when it was."""
        with self._cond:
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        with self._cond:
            pending = len(self._pending)
        return {"writes": self.writes, "written": self.written, "pending": pending,
                "error": self.error or None}
