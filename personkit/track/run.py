"""The ``personkit track`` loop: every frame of a source through the network and a tracker.

Output folder:

* ``results.txt``: MOT Challenge results (``frame,id,left,top,w,h,score,-1,-1,-1``);
* ``tracks.json``: the source's exact frame rate and start (``start_time``, ISO-8601 UTC, and
  ``time_source``: how it is known, :meth:`~personkit.track.io.TrackSource.clock`); per track
  its id, frame span and times (``first_time``, ``last_time``: seconds from the source's first
  frame, from presentation timestamps where the source has them; ``first_seen``,
  ``last_seen``: the same as ISO-8601 UTC times, null when the start is unknown), merged
  attributes (label, confidence, agreement),
  embedding consistency and per-frame boxes and times (with ``--keypoints``: keypoints; with
  ``--save-parts``: the path of each frame's part label PNG under ``parts/``); ``ended`` when
  a broken frame ended the run;
* ``track_embeddings.npy`` + ``gallery.json``: the track embeddings, a bank for later runs;
* ``thumbs/ID.jpg``: each track's best view (:func:`view_quality`: a whole box before one
  the frame cuts, upright before a sliver, then the score and the size), the plain crop, for
  ``personkit index``; with ``--thumb-overlays`` also ``thumbs/ID_overlay.jpg`` with parts,
  skeleton and the box in the track's merged gender's colour;
* ``video.mp4`` (``--video-out``, H.264) or ``frames/*.png`` (``--png-frames``);
* ``metrics.json`` (``--eval``, needs ``gt/gt.txt``) and ``gallery_matches.json``
  (``--gallery BANK``);
* ``summary.json``: the command's settings, counts and frames/s (network and tracker).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from personkit.checkpoint import write_json
from personkit.data.mot import write_mot_results
from personkit.data.times import iso, seen_at
from personkit.data.urls import strip_credentials
from personkit.inference.backends import engine_record
from personkit.inference.predictor import PersonResult, Predictor
from personkit.inference.visualize import (
    draw_results,
    draw_thumbnail,
    save_image,
    save_part_maps,
    view,
)
from personkit.models.detector import DetectorBase
from personkit.outputs import claim_outputs
from personkit.track.io import FrameError, TrackSource, VideoWriter, prefetched
from personkit.track.tracker import FrameTracks, Tracker

#: What a track run writes into its folder (an earlier run's copies there are refused, or
#: with ``overwrite`` removed first, so no file describes another run): files, then folders.
OUTPUT_FILES = ("results.txt", "tracks.json", "track_embeddings.npy", "gallery.json",
                "video.mp4", "metrics.json", "gallery_matches.json", "summary.json")
OUTPUT_FOLDERS = ("frames", "parts", "thumbs")
OUTPUTS = OUTPUT_FILES + OUTPUT_FOLDERS


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
        save_part_maps(out_dir / rel, r.parts, len(r.part_classes))
        tracker.tracks[int(tid)].observations[-1].parts_path = rel


#: A box closer than this many pixels to the frame's edge may be cut by it.
EDGE_PX = 2.0
#: Height / width of an upright person's box: outside it a view is a sliver or a crouch.
UPRIGHT = (1.2, 4.5)


def view_quality(box: np.ndarray, width: int, height: int,
                 score: float) -> tuple[bool, float, bool, float, float]:
    """How well a box shows its person, compared as a tuple (larger is better): whole (all
    of the box inside the frame and clear of its edges: a detector clips the boxes of people
    the frame cuts, so a box at the edge is taken as cut), the share inside the frame,
    upright (height / width in :data:`UPRIGHT`: not a sliver), the detection score, the
    area."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    inside = max(0.0, min(x2, width) - max(x1, 0)) * max(0.0, min(y2, height) - max(y1, 0))
    share = inside / max(area, 1e-9)
    whole = share >= 0.999 and min(x1, y1, width - x2, height - y2) >= EDGE_PX
    aspect = (y2 - y1) / max(x2 - x1, 1e-9)
    return (whole, round(share, 1), UPRIGHT[0] <= aspect <= UPRIGHT[1], round(float(score), 1),
            area)


class BestViews:
    """Each track's best view so far (:func:`view_quality`: whole before cut by the frame,
    upright before a sliver, then the detection score and the size): its part of the frame
    and result are kept, and written as its thumbnail only at the end, once per track."""

    def __init__(self) -> None:
        self.keys: dict[int, tuple[bool, float, bool, float, float]] = {}
        self.views: dict[int, tuple[np.ndarray, PersonResult]] = {}

    def update(self, image: np.ndarray, ft: FrameTracks) -> None:
        h, w = image.shape[:2]
        for tid, box, score, r in zip(ft.track_ids, ft.boxes, ft.scores, ft.results,
                                      strict=True):
            key = view_quality(box, w, h, score)
            if int(tid) not in self.keys or key > self.keys[int(tid)]:
                try:
                    crop, result = view(image, r if r is not None else
                                        PersonResult(box=tuple(box)))
                except ValueError:  # a box entirely outside the frame: no view from it
                    continue
                self.views[int(tid)] = (crop.copy(), result)  # the frame itself is not kept
                self.keys[int(tid)] = key

    def write(self, out_dir: Path, genders: dict[int, str] | None = None,
              overlays: bool = False) -> dict[int, str]:
        """``thumbs/ID.jpg`` for every track, the plain crop (what a person checks a match
        by: the clothing's colours as they are); with ``overlays`` also
        ``thumbs/ID_overlay.jpg`` with parts, skeleton and a box coloured by the track's
        merged gender (``genders``), not the one frame's. Returns the plain thumbnails'
        relative paths by track id."""
        paths = {}
        for tid, (crop, result) in self.views.items():
            paths[tid] = f"thumbs/{tid:04d}.jpg"
            save_image(out_dir / paths[tid], draw_thumbnail(crop, result, overlays=False))
            if overlays:
                merged = _with_gender(result, (genders or {}).get(tid))
                save_image(out_dir / f"thumbs/{tid:04d}_overlay.jpg",
                           draw_thumbnail(crop, merged, overlays=True))
        return paths


def _with_gender(result: PersonResult, gender: str | None) -> PersonResult:
    """``result`` with its gender replaced by the track's merged one (for the box colour)."""
    if gender is None or not result.attributes or "gender" not in result.attributes:
        return result
    attributes = {**result.attributes,
                  "gender": result.attributes["gender"]._replace(label=gender)}
    return dataclasses.replace(result, attributes=attributes)


def frame_record(ft: FrameTracks, seconds: float | None = None) -> dict[str, Any]:
    """One line of ``--jsonl``: the frame, when it was tracked (``time``, the wall clock) and,
    with ``seconds``, its time in the source (``source_time``, seconds from its first frame),
    and its people (track id, box, score and what the network said about them)."""
    people = []
    for tid, box, score, r in zip(ft.track_ids, ft.boxes, ft.scores, ft.results, strict=True):
        person = {"track_id": int(tid), **(r.to_dict() if r is not None else {}),
                  "box": [round(float(v), 2) for v in box], "score": round(float(score), 4)}
        person.pop("parts_box", None)
        people.append(person)
    record: dict[str, Any] = {"frame": int(ft.frame), "time": round(time.time(), 3)}
    if seconds is not None:
        record["source_time"] = seconds
    return {**record, "people": people}


class TrackingStopped(ValueError):
    """A run whose source had a frame that cannot be read or decoded: everything tracked
    before it was written (``summary``: what ``summary.json`` holds), then this names the
    frame and the error."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


@dataclass
class _Tracked:
    """What the frame loop of :func:`track_source` collects."""

    rows: list[tuple[int, int, np.ndarray, float]] = field(default_factory=list)
    times: dict[int, float] = field(default_factory=dict)  # frame -> seconds in the source
    frames: int = 0
    detections: int = 0
    ended: str = ""  # "error: ..." when a frame of the source could not be read
    write_seconds: float = 0.0  # drawing and writing the outputs, best views included
    wait_seconds: float = 0.0  # the loop waiting for the reading thread's next frame
    overlap: bool = False  # frames read and detected in a thread of their own


def _open_jsonl(jsonl: str | Path | None) -> TextIO | None:
    if jsonl is None:
        return None
    return sys.stdout if str(jsonl) == "-" else open(jsonl, "w", encoding="utf-8")  # noqa: SIM115


def _draw_frame(out_dir: Path, image: np.ndarray, ft: FrameTracks, writer: VideoWriter | None,
                png_frames: bool) -> None:
    canvas = draw_tracks(image, ft)
    if writer:
        writer.write(canvas)
    if png_frames:
        save_image(out_dir / "frames" / f"{ft.frame:06d}.png", canvas)


def _track_frames(tracker: Tracker, source: TrackSource, out_dir: Path, views: BestViews, *,
                  video_out: bool, png_frames: bool, save_parts: bool, progress: bool,
                  jsonl: str | Path | None, overlap: bool = True) -> _Tracked:
    """Every frame of ``source`` through ``tracker``, drawn and streamed as asked; a frame of
    the source that cannot be read ends the loop (:attr:`_Tracked.ended`). With ``overlap``
    the source's frames are read and their people detected in a thread of their own, a frame
    or two ahead (:func:`~personkit.track.io.prefetched`)."""
    from tqdm import tqdm

    got = _Tracked(overlap=overlap)
    writer = VideoWriter(out_dir / "video.mp4", source.frame_rate) if video_out else None
    stream = _open_jsonl(jsonl)
    bar = tqdm(total=len(source) or None, unit="frame", disable=not progress, desc="track")
    frames = prefetched(source) if overlap else iter(source)
    waited = time.perf_counter()
    try:
        for t, image, boxes, scores, seconds in frames:
            got.wait_seconds += time.perf_counter() - waited
            ft = tracker.update(image, boxes, scores, frame=t)
            start = time.perf_counter()
            got.times[t] = seconds
            if stream is not None:
                stream.write(json.dumps(frame_record(ft, seconds)) + "\n")
                stream.flush()
            got.rows += [(t, int(i), b, float(s)) for i, b, s
                         in zip(ft.track_ids, ft.boxes, ft.scores, strict=True)]
            views.update(image, ft)
            if save_parts:
                _save_parts(out_dir, ft, tracker)
            if writer or png_frames:
                _draw_frame(out_dir, image, ft, writer, png_frames)
            got.write_seconds += time.perf_counter() - start
            got.frames, got.detections = got.frames + 1, got.detections + len(boxes)
            bar.update(1)
            waited = time.perf_counter()
    except FrameError as e:  # the source broke: keep what was tracked before the frame
        got.ended = f"error: {e}"
    except KeyboardInterrupt:  # a live source has no end of its own: keep what was tracked
        if source.live is None:
            raise
        source.live.end = "interrupted (Ctrl-C)"
        source.live.close()
    finally:
        frames.close()  # type: ignore[attr-defined]  # the reading thread stopped
        bar.close()
        if writer:
            writer.close()
        if stream is not None and stream is not sys.stdout:
            stream.close()
    return got


def _timed_track(track: dict[str, Any], times: dict[int, float],
                 start: datetime | None = None) -> dict[str, Any]:
    """A track of ``tracks.json`` with its times: ``first_time`` and ``last_time`` after its
    frame span (seconds from the source's first frame), ``first_seen`` and ``last_seen`` (those
    after ``start``, ISO-8601 UTC; None without a start), ``time`` in each frame's row."""
    head = {k: track[k] for k in ("track_id", "first_frame", "last_frame")}
    head.update(first_time=times[track["first_frame"]], last_time=times[track["last_frame"]])
    head.update(first_seen=seen_at(start, head["first_time"]),
                last_seen=seen_at(start, head["last_time"]))
    rest = {k: v for k, v in track.items() if k not in head}
    rest["frames"] = [{"frame": f["frame"], "time": times[f["frame"]], **f}
                      for f in track["frames"]]
    return {**head, **rest}


def _write_tracks(out_dir: Path, tracker: Tracker, source: TrackSource, got: _Tracked,
                  views: BestViews, keypoints: bool, thumb_overlays: bool = False) -> list[Any]:
    """``results.txt``, ``thumbs/``, ``tracks.json`` and the bank (``track_embeddings.npy``,
    ``gallery.json``); returns the track summaries."""
    write_mot_results(out_dir / "results.txt", got.rows)
    summaries = tracker.summaries()
    genders = {s.track_id: g["label"] for s in summaries
               if (g := s.attributes().get("gender")) is not None}
    thumbs = views.write(out_dir, genders, thumb_overlays)
    start, time_source = source.clock()
    write_json(out_dir / "tracks.json", {
        "sequence": source.name, "tracker": tracker.name, "embeddings": tracker.mode,
        "engine": engine_record(tracker.predictor.engine) if tracker.predictor else None,
        "frame_rate": source.frame_rate, "source_path": _source_path(source),
        "start_time": None if start is None else iso(start), "time_source": time_source or None,
        **({"ended": got.ended} if got.ended else {}),
        "tracks": [{**_timed_track(s.to_dict(keypoints), got.times, start),
                    "thumbnail": thumbs.get(s.track_id)} for s in summaries]}, indent=1, end="")
    embedded = [(s.track_id, e) for s in summaries if (e := s.embedding()) is not None]
    if embedded:
        from personkit.track.gallery import bank_entries

        np.save(out_dir / "track_embeddings.npy", np.stack([e for _, e in embedded]))
        model_id = tracker.predictor.model_id if tracker.predictor else None
        write_json(out_dir / "gallery.json", bank_entries(source.name, embedded, model_id),
                   indent=None, end="")
    return summaries


def _source_path(source: TrackSource) -> str:
    """What was tracked: the sequence's or video's absolute path, a stream's address (without
    its user and password), or "" (a folder of frames)."""
    src = source.seq_dir or source.video
    if src is None:
        return strip_credentials(str(getattr(source.live, "url", "") or ""))
    return str(Path(src).resolve())


def _report(source: TrackSource, got: _Tracked, out_dir: Path) -> dict[str, Any]:
    """Print the skipped boxes, a live source's end and a broken frame on stderr; their
    entries of the summary."""
    skipped = getattr(source, "skipped", [])
    if skipped:
        print(f"track: skipped {len(skipped)} box(es) with no area inside the frame, e.g. "
              f"{skipped[0]}", file=sys.stderr)
    out: dict[str, Any] = {}
    if source.detector is not None and got.frames and not got.detections:
        out["warning"] = (f"the detector found no person in any of the {got.frames} frames "
                          f"(score >= {source.detector.min_score}): lower "
                          f"--detector-score, or check the detector on one frame")
        print(f"track: warning: {source.name}: {out['warning']}", file=sys.stderr)
    if source.live is not None:
        out["live"] = source.live.summary()
        print(f"track: {source.name}: {out['live']['end']}; {got.frames} frames tracked, "
              f"{source.live.dropped} of {source.live.decoded} dropped to keep up",
              file=sys.stderr)
    if got.ended:
        out["ended"] = got.ended
        print(f"track: {source.name}: the run ended early, {got.ended}; the {got.frames} "
              f"frames before it are tracked and written to {out_dir}", file=sys.stderr)
    return {**out, "skipped_boxes": len(skipped), "skipped_examples": skipped[:10]}


def stage_seconds(wall: float, source: TrackSource, tracker: Tracker,
                  got: _Tracked) -> dict[str, float]:
    """The run's wall time split by stage so that the parts add up to ``total``: decode
    (reading frames), detect (the person detector), network, tracker, write (drawing and
    writing outputs) and other (the rest: reading det.txt rows, the loop). When the frames
    were read in a thread of their own (``got.overlap``), decode and detect ran alongside
    and are not parts of the wall time: ``waiting`` (for that thread's next frame) is, and
    decode and detect are in :func:`reading_seconds`."""
    stages = {"network": tracker.seconds["network"], "tracker": tracker.seconds["tracker"],
              "write": got.write_seconds}
    stages = {"waiting": got.wait_seconds, **stages} if got.overlap else {
        **source.seconds, **stages}
    stages["other"] = max(0.0, wall - sum(stages.values()))
    return {"total": round(wall, 3), **{k: round(v, 3) for k, v in stages.items()}}


def reading_seconds(source: TrackSource, got: _Tracked) -> dict[str, dict[str, float]]:
    """``{"seconds_alongside": {decode, detect}}`` when frames were read in a thread of
    their own (:func:`stage_seconds`), else nothing."""
    return {"seconds_alongside": {k: round(v, 3) for k, v in source.seconds.items()}} \
        if got.overlap else {}


def track_source(tracker: Tracker, source: TrackSource, out_dir: str | Path, *,
                 video_out: bool = False, png_frames: bool = False, save_parts: bool = False,
                 keypoints: bool = False, progress: bool = True,
                 jsonl: str | Path | None = None,
                 thumb_overlays: bool = False, overlap: bool = True) -> dict[str, Any]:
    """Run ``tracker`` over ``source`` and write ``out_dir`` (see the module docstring);
    ``jsonl`` (a path, or ``-`` for stdout) streams :func:`frame_record` lines as frames are
    tracked; ``overlap`` reads and detects the next frames in a thread of their own while
    this one is tracked (False: one after the other, as before issue 38). Ctrl-C on a live
    source ends the run and keeps what was tracked. A frame of the source that cannot be
    read or decoded (:class:`~personkit.track.io.FrameError`: a truncated video, a broken
    image) ends the run too: everything tracked before it is written, and the summary's and
    ``tracks.json``'s ``ended`` (``"error: ..."``, also printed on stderr) names it; errors
    of the network or the tracker are raised."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start, views = time.perf_counter(), BestViews()
    got = _track_frames(tracker, source, out_dir, views, video_out=video_out,
                        png_frames=png_frames, save_parts=save_parts, progress=progress,
                        jsonl=jsonl, overlap=overlap)
    written = time.perf_counter()
    summaries = _write_tracks(out_dir, tracker, source, got, views, keypoints, thumb_overlays)
    got.write_seconds += time.perf_counter() - written
    wall = time.perf_counter() - start
    reported = _report(source, got, out_dir)
    live = {"live": reported.pop("live")} if "live" in reported else {}
    return {"sequence": source.name, "frames": got.frames, "detections": got.detections,
            **live, **reported, "tracks": len(summaries), "tracker": tracker.name,
            "embeddings": tracker.mode, "seconds": stage_seconds(wall, source, tracker, got),
            **reading_seconds(source, got),
            "fps": {"total": got.frames / wall if wall > 0 else None},
            "results": str(out_dir / "results.txt"), "tracks_json": str(out_dir / "tracks.json"),
            **({"video": str(out_dir / "video.mp4")} if video_out else {})}


def format_speed(summary: dict[str, Any]) -> str:
    """``12.3 frames/s; per frame: decode 4 ms, detect 40 ms, ...``: the speed and where the
    wall time went (every stage that took any; they add up to the total)."""
    secs, frames = summary["seconds"], summary["frames"]
    if not frames or not secs["total"]:
        return f"no frames tracked in {secs['total']:.1f} s"
    parts = ", ".join(f"{k} {1000 * v / frames:.0f} ms" for k, v in secs.items()
                      if k != "total" and v > 0)
    alongside = ", ".join(f"{k} {1000 * v / frames:.0f} ms" for k, v in
                          summary.get("seconds_alongside", {}).items() if v > 0)
    return (f"{frames / secs['total']:.1f} frames/s; per frame: {parts}"
            + (f"; reading frames alongside: {alongside}" if alongside else ""))


def format_summary(summary: dict[str, Any], out_dir: str | Path) -> str:
    """:func:`track`'s summary in a few lines: counts and speed, metrics, gallery matches."""
    from personkit.track.evaluate import format_metrics
    from personkit.track.gallery import describe_match, describe_threshold

    lines = [f"{summary['tracks']} tracks over {summary['frames']} frames -> {out_dir} "
             f"({format_speed(summary)})"]
    if "detector" in summary:
        d = summary["detector"]
        lines.append(f"people found by {d['detector']} (score >= {d['min_score']})" + (
            f"; {d['dropped_non_finite']} non-finite box(es) dropped"
            if d["dropped_non_finite"] else ""))
    if "metrics" in summary:
        lines.append(format_metrics(summary["metrics"]))
    if "match_threshold" in summary:
        lines.append(describe_threshold(summary["match_threshold"]))
    lines += [f"  {describe_match(m)}" for m in summary.get("gallery_matches", ())]
    return "\n".join(lines)


def track(predictor: Predictor | None, source: str | Path, out_dir: str | Path, *,
          detector: DetectorBase | None = None, detections: str | Path | None = None,
          mot_source: str = "auto", tracker: str = "botsort", embeddings: str = "personkit",
          seed: int = 0, tracker_kwargs: dict[str, Any] | None = None, evaluate: bool = False,
          gallery: str | Path | None = None, match_threshold: float | None = None,
          progress: bool = False, overwrite: bool = False, start_time: str | None = None,
          **outputs: Any) -> dict[str, Any]:
    """``personkit track``: a MOT sequence folder, or a video with ``detections``, tracked
    into ``out_dir`` (see the module docstring; an earlier run's results there are refused,
    or with ``overwrite`` replaced: :func:`~personkit.outputs.claim_outputs`) with
    ``predictor``'s attributes, pose, parts and embeddings; returns the summary written to
    ``summary.json``.

    ``predictor`` None tracks by motion alone. ``detector`` (an opened detector,
    :func:`~personkit.inference.detectors.open_detector`) finds the people instead of
    ``det.txt``/``detections``. ``evaluate`` scores the results against the sequence's
    ``gt/gt.txt`` with TrackEval (``metrics.json``); ``gallery`` matches this run's tracks
    against a bank of earlier tracks (``gallery_matches.json``) within ``match_threshold``
    (default: the model's calibrated one, :mod:`personkit.track.gallery`). ``start_time``
    (``--start-time``, ISO-8601) is when a file's first frame was captured (default: its
    metadata, else its modification time: :func:`~personkit.track.io.start_of`). ``outputs`` are
    :func:`track_source`'s options (``video_out``, ``png_frames``, ``save_parts``,
    ``keypoints``, ``jsonl``).

    Raises:
        TrackingStopped: a frame of the source could not be read or decoded; everything
            tracked before it was written first (``--eval`` skipped).
    """
    from personkit.inference.detectors import detector_summary
    from personkit.track.io import open_track_source

    dropped = detector.dropped if detector is not None else 0
    src = open_track_source(source, detections, mot_source, detector, start_time)
    gt = _ground_truth(src) if evaluate else None
    bank, used = _bank(predictor, gallery, match_threshold) if gallery else (None, None)
    trk = Tracker(predictor, tracker, embeddings, frame_rate=src.frame_rate, seed=seed,
                  tracker_kwargs=tracker_kwargs or {})
    out_dir = Path(out_dir)
    claim_outputs(out_dir, OUTPUTS, overwrite, "track")
    summary = track_source(trk, src, out_dir, progress=progress, **outputs)
    if detector is not None:
        summary["detector"] = detector_summary(detector, dropped)
    if predictor is not None:  # what ran the network, and with --engine auto why
        summary["engine"] = engine_record(predictor.engine)
    if gt is not None:
        _evaluate(summary, gt, len(src), src.name, out_dir)
    if bank is not None:
        _match_gallery(summary, trk, bank, used, out_dir)
    return _finish(summary, out_dir)


def _bank(predictor: Predictor | None, gallery: str | Path,
          match_threshold: float | None) -> tuple[Any, dict[str, Any]]:
    """``--gallery``: the bank of earlier tracks (:func:`~personkit.track.gallery.load_bank`:
    refused unless ``predictor``'s model wrote it) and the threshold matches use."""
    from personkit.track.gallery import gallery_threshold, load_bank

    bank = load_bank(gallery, predictor.model_id if predictor else None)
    name = str(predictor.path) if predictor and predictor.path is not None else "this model"
    calibration = predictor.calibration if predictor else None
    return bank, gallery_threshold(calibration, match_threshold, name)


def _match_gallery(summary: dict[str, Any], trk: Tracker, bank: Any, used: dict[str, Any],
                   out_dir: Path) -> None:
    """``--gallery``: this run's tracks matched against ``bank`` within ``used``'s threshold,
    into ``summary`` and ``gallery_matches.json``."""
    from personkit.track.gallery import match_gallery

    tracks = [(s.track_id, e) for s in trk.summaries() if (e := s.embedding()) is not None]
    summary["match_threshold"] = used
    summary["gallery_matches"] = match_gallery(tracks, bank, used["threshold"])
    write_json(out_dir / "gallery_matches.json", summary["gallery_matches"], indent=1, end="")


def _finish(summary: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """``summary.json``; then, for a run that a broken frame ended, :class:`TrackingStopped`."""
    write_json(out_dir / "summary.json", summary, indent=1, end="")
    if "ended" in summary:
        raise TrackingStopped(f"{summary['ended'].removeprefix('error: ')} (the "
                              f"{summary['frames']} frames before it are tracked and written "
                              f"to {out_dir})", summary)
    return summary


def _ground_truth(src: TrackSource) -> Path:
    """``--eval``'s ground truth: the sequence's ``gt/gt.txt``, or the one beside a video (a
    MOT-like folder); missing, a FileNotFoundError before anything is tracked."""
    folder = src.seq_dir or (src.video.parent if src.video else None)
    gt = folder / "gt" / "gt.txt" if folder else None
    if gt is None or not gt.is_file():
        raise FileNotFoundError(f"--eval needs ground truth: {gt or 'a MOT sequence folder'}"
                                f" not found")
    return gt


def _evaluate(summary: dict[str, Any], gt: Path, length: int, name: str, out_dir: Path) -> None:
    """``--eval``: TrackEval's scores into ``summary`` and ``metrics.json``; skipped (saying
    why) when the run ended early, since its results do not cover the ground truth's frames."""
    from personkit.track.evaluate import evaluate_mot

    if "ended" in summary:
        summary["metrics_skipped"] = "the run ended before the end of the sequence"
        return
    summary["metrics"] = evaluate_mot(gt, summary["results"], length or summary["frames"], name)
    write_json(out_dir / "metrics.json", summary["metrics"], indent=1, end="")
