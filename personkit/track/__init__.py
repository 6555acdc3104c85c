"""``personkit track``: people followed through a video with BoxMOT and personkit's embeddings,
with what the network knows about each of them merged per track (see docs/tracking.md).

Needs the optional tracking extra (BoxMOT is AGPL-3.0); :mod:`personkit.extras` names the
install command when it is missing.
"""

from __future__ import annotations

from personkit.track.merge import TrackObservation, TrackSummary
from personkit.track.run import track
from personkit.track.tracker import EMBEDDINGS, TRACKERS, FrameTracks, Tracker

__all__ = ["EMBEDDINGS", "TRACKERS", "FrameTracks", "TrackObservation", "TrackSummary",
           "Tracker", "track"]
