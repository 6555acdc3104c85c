"""``personkit track``: people followed through a video with BoxMOT and personkit's embeddings,
with what the network knows about each of them merged per track (see docs/tracking.md).

Needs the optional tracking extra (BoxMOT is AGPL-3.0); :mod:`personkit.extras` names the
install command when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personkit.track.merge import TrackObservation, TrackSummary
from personkit.track.tracker import EMBEDDINGS, TRACKERS, FrameTracks, Tracker

__all__ = ["EMBEDDINGS", "TRACKERS", "FrameTracks", "TrackObservation", "TrackSummary",
           "Tracker", "track"]


def track(checkpoint: str | Path | None, source: str | Path, out_dir: str | Path, *,
          detections: str | Path | None = None, tracker: str = "botsort",
          embeddings: str = "personkit", device: str = "cpu", progress: bool = False,
          **outputs: Any) -> dict[str, Any]:
    """Track a MOT sequence folder or a video (with ``detections``) into ``out_dir``.

    ``outputs`` are the keyword options of :func:`personkit.track.run.track_source`
    (``video_out``, ``png_frames``, ``save_parts``, ``keypoints``). Returns its summary.
    """
    from personkit.inference import Predictor
    from personkit.track.io import open_track_source
    from personkit.track.run import track_source

    src = open_track_source(source, detections)
    predictor = None if checkpoint is None else Predictor.from_checkpoint(checkpoint, device)
    trk = Tracker(predictor, tracker, embeddings, frame_rate=src.frame_rate)
    return track_source(trk, src, out_dir, progress=progress, **outputs)
