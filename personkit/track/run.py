"""The ``personkit track`` loop: every frame of a source through the network and a tracker.

Output folder:

* ``results.txt``: MOT Challenge results (``frame,id,left,top,w,h,score,-1,-1,-1``);
* ``tracks.json``: per track its id, frame span, merged attributes (label, confidence,
  agreement), embedding consistency and per-frame boxes (with ``--keypoints``: keypoints;
  with ``--save-parts``: the path of each frame's part label PNG under ``parts/``);
* ``track_embeddings.npy`` + ``gallery.json``: the track embeddings, a bank for later runs;
* ``video.mp4`` (``--video-out``, H.264) or ``frames/*.png`` (``--png-frames``);
* ``metrics.json`` (``--eval``, needs ``gt/gt.txt``) and ``gallery_matches.json``
  (``--gallery BANK``);
* ``summary.json``: the command's settings, counts and frames/s (network and tracker).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from personkit.inference.predictor import PersonResult
from personkit.inference.visualize import draw_results, save_image
from personkit.track.io import TrackSource, VideoWriter, write_mot_results
from personkit.track.tracker import FrameTracks, Tracker


def draw_tracks(image: np.ndarray, ft: FrameTracks) -> np.ndarray:
    """Parts, skeletons and gender-coloured boxes (paper Fig. 7) with each track's id."""
    results = [r if r is not None else PersonResult(box=tuple(b)) for r, b
               in zip(ft.results, ft.boxes, strict=True)]
    canvas = draw_results(image, results, text=())
    for tid, (x1, y1, _, _) in zip(ft.track_ids, ft.boxes, strict=True):
        p = (int(max(0, x1)), int(max(12, y1 - 3)))
        cv2.putText(canvas, str(int(tid)), p, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(canvas, str(int(tid)), p, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255),
                    1, cv2.LINE_AA)
    return canvas


def _save_parts(out_dir: Path, ft: FrameTracks, tracker: Tracker) -> None:
    for tid, r in zip(ft.track_ids, ft.results, strict=True):
        if r is None or r.parts is None:
            continue
        rel = f"parts/{int(tid):04d}_{ft.frame:06d}.png"
        save_image(out_dir / rel, np.repeat(r.parts[:, :, None], 3, axis=2))
        tracker.tracks[int(tid)].observations[-1].parts_path = rel


def track_source(tracker: Tracker, source: TrackSource, out_dir: str | Path, *,
                 video_out: bool = False, png_frames: bool = False, save_parts: bool = False,
                 keypoints: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run ``tracker`` over ``source`` and write ``out_dir`` (see the module docstring)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[int, int, np.ndarray, float]] = []
    writer = VideoWriter(out_dir / "video.mp4", source.frame_rate) if video_out else None
    start, n_frames, n_dets = time.perf_counter(), 0, 0
    bar = tqdm(total=len(source) or None, unit="frame", disable=not progress, desc="track")
    try:
        for t, image, boxes, scores in source:
            ft = tracker.update(image, boxes, scores, frame=t)
            rows += [(t, int(i), b, float(s)) for i, b, s
                     in zip(ft.track_ids, ft.boxes, ft.scores, strict=True)]
            if save_parts:
                _save_parts(out_dir, ft, tracker)
            if writer or png_frames:
                canvas = draw_tracks(image, ft)
                if writer:
                    writer.write(canvas)
                if png_frames:
                    save_image(out_dir / "frames" / f"{t:06d}.png", canvas)
            n_frames, n_dets = n_frames + 1, n_dets + len(boxes)
            bar.update(1)
    finally:
        bar.close()
        if writer:
            writer.close()
    wall = time.perf_counter() - start
    write_mot_results(out_dir / "results.txt", rows)
    summaries = tracker.summaries()
    (out_dir / "tracks.json").write_text(json.dumps(
        {"sequence": source.name, "tracker": tracker.name, "embeddings": tracker.mode,
         "tracks": [s.to_dict(keypoints) for s in summaries]}, indent=1), encoding="utf-8")
    embedded = [(s.track_id, e) for s in summaries if (e := s.embedding()) is not None]
    if embedded:
        from personkit.track.gallery import bank_entries

        np.save(out_dir / "track_embeddings.npy", np.stack([e for _, e in embedded]))
        (out_dir / "gallery.json").write_text(json.dumps(bank_entries(source.name, embedded)),
                                              encoding="utf-8")
    secs = tracker.seconds
    return {"sequence": source.name, "frames": n_frames, "detections": n_dets,
            "tracks": len(summaries), "tracker": tracker.name, "embeddings": tracker.mode,
            "seconds": {"total": round(wall, 3), "network": round(secs["network"], 3),
                        "tracker": round(secs["tracker"], 3)},
            "fps": {"total": n_frames / max(wall, 1e-9),
                    "network": n_frames / max(secs["network"], 1e-9),
                    "tracker": n_frames / max(secs["tracker"], 1e-9)},
            "results": str(out_dir / "results.txt"), "tracks_json": str(out_dir / "tracks.json"),
            **({"video": str(out_dir / "video.mp4")} if video_out else {})}
