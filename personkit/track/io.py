"""Inputs and outputs of ``personkit track``.

Inputs (each frame: number, RGB image, detections):

* a MOT Challenge sequence folder: ``img1/000001.jpg, ...`` (``imDir`` of ``seqinfo.ini``) and
  ``det/det.txt`` (else ``gt/gt.txt``). Frames must be numbered 1..N without gaps (N is
  ``seqLength`` when ``seqinfo.ini`` gives it);
* a video file (decoded with PyAV) and a detections file in the same MOT format, whose frame
  numbers count decoded frames from 1.

Detection rows are ``frame,id,left,top,width,height,score[,...]`` (1-based pixels, as
MOT16). A row that is not numbers, has fewer than 7 columns, a frame below 1, a non-positive
size or a non-finite value is an error naming the file and line.

Outputs: MOT Challenge results (``frame,id,left,top,w,h,score,-1,-1,-1``) and an H.264 mp4
(PyAV) or PNG frames.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personkit.inference.sources import IMAGE_EXTENSIONS, read_image

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class Detections:
    """Detections of a whole sequence, grouped by 1-based frame number."""

    path: Path
    boxes: dict[int, np.ndarray]  # frame -> N×4 xyxy (0-based pixels)
    scores: dict[int, np.ndarray]
    gt_ids: dict[int, np.ndarray]

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes.get(t, np.zeros((0, 4))), self.scores.get(t, np.zeros(0))


def read_detections(path: str | Path, gt: bool = False) -> Detections:
    """Parse a MOT ``det.txt`` (or, with ``gt``, a ``gt.txt``: pedestrians marked considered).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a bad row (see the module docstring), naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            v = [float(x) for x in line.replace(" ", "").rstrip(",").split(",")]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a MOT row (frame,id,left,top,w,h,score,...): "
                             f"{line!r}") from None
        if len(v) < 7 or not np.isfinite(v[:7]).all():
            raise ValueError(f"{path}:{n}: expected at least 7 finite numbers "
                             f"(frame,id,left,top,w,h,score), got {line!r}")
        if v[0] < 1 or v[0] != int(v[0]):
            raise ValueError(f"{path}:{n}: frame must be an integer >= 1, got {v[0]:g}")
        if v[4] <= 0 or v[5] <= 0:
            raise ValueError(f"{path}:{n}: box width and height must be > 0, got {line!r}")
        if gt and (v[6] == 0 or (len(v) >= 8 and v[7] not in (1, -1))):
            continue  # gt rows not to be considered, or not pedestrians (MOT16 rules)
        rows.append(v[:7])
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    boxes, scores, ids = {}, {}, {}
    for t in np.unique(table[:, 0]).astype(int):
        r = table[table[:, 0] == t]
        x1, y1 = r[:, 2] - 1, r[:, 3] - 1
        boxes[t] = np.stack([x1, y1, x1 + r[:, 4], y1 + r[:, 5]], axis=1)
        scores[t] = np.clip(r[:, 6], 0, 1) if not gt else np.ones(len(r))
        ids[t] = r[:, 1].astype(np.int64)
    return Detections(path, boxes, scores, ids)


@dataclass
class TrackSource:
    """Frames of a MOT sequence or a video, with their detections."""

    name: str
    detections: Detections
    frame_rate: int
    length: int | None
    seq_dir: Path | None = None
    video: Path | None = None
    image_paths: list[Path] | None = None

    def __len__(self) -> int:
        return self.length or 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(frame number, RGB image, N×4 boxes, N scores)`` per frame."""
        frames = _video_frames(self.video) if self.video else (
            (i + 1, read_image(p)) for i, p in enumerate(self.image_paths or []))
        for t, image in frames:
            boxes, scores = self.detections.frame(t)
            yield t, image, boxes, scores


def _seqinfo(seq_dir: Path) -> dict[str, str]:
    ini = seq_dir / "seqinfo.ini"
    if not ini.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
    except configparser.Error as e:
        raise ValueError(f"{ini}: not a valid seqinfo.ini ({e})") from None
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


def open_mot_sequence(seq_dir: str | Path, source: str = "auto") -> TrackSource:
    """A MOT sequence folder; frames missing from ``img1/`` are an error naming them."""
    seq_dir = Path(seq_dir)
    info = _seqinfo(seq_dir)
    im_dir = seq_dir / info.get("imdir", "img1")
    if not im_dir.is_dir():
        raise FileNotFoundError(f"MOT sequence {seq_dir} has no image folder {im_dir.name}/")
    if source == "auto":
        source = "det" if (seq_dir / "det" / "det.txt").is_file() else "gt"
    if source not in ("det", "gt"):
        raise ValueError(f"MOT source must be 'auto', 'det' or 'gt', got {source!r}")
    images = {int(p.stem): p for p in im_dir.iterdir()
              if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.isdigit()}
    if not images:
        raise ValueError(f"no numbered frames (e.g. 000001.jpg) in {im_dir}")
    length = int(info.get("seqlength", max(images)))
    missing = [t for t in range(1, length + 1) if t not in images]
    if missing:
        shown = ", ".join(str(t) for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{im_dir}: {len(missing)} of {length} frames missing "
                         f"(frame numbers {shown})")
    dets = read_detections(seq_dir / source / f"{source}.txt", gt=source == "gt")
    beyond = [t for t in dets.boxes if t > length]
    if beyond:
        raise ValueError(f"{dets.path}: detections for frame {beyond[0]}, beyond the "
                         f"{length} frames of {im_dir}")
    return TrackSource(info.get("name", seq_dir.name), dets, int(info.get("framerate", 30)),
                       length, seq_dir=seq_dir,
                       image_paths=[images[t] for t in range(1, length + 1)])


def open_video(path: str | Path, detections: str | Path) -> TrackSource:
    """A video file (PyAV) with a MOT-format detections file.

    Raises:
        ValueError: the file cannot be opened or decoded as a video (naming it).
    """
    from personkit.track.deps import require

    av = require("av")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = int(round(float(stream.average_rate or 30)))
            length = stream.frames or None
            next(container.decode(video=0))  # fails now, not halfway through a run
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError) as e:
        raise ValueError(f"cannot decode video {path}: {e or 'no frames'}") from None
    return TrackSource(path.stem, read_detections(detections), rate, length, video=path)


def _video_frames(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    import av

    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0), start=1):
                yield i, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode video {path}: {e}") from None


def open_track_source(path: str | Path, detections: str | Path | None = None,
                      mot_source: str = "auto") -> TrackSource:
    """A MOT sequence folder, or a video file with ``detections``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        return open_mot_sequence(path, mot_source)
    if detections is None:
        raise ValueError(f"video input {path} needs a detections file (--detections, MOT "
                         f"det.txt format)")
    return open_video(path, detections)


def write_mot_results(path: str | Path, rows: list[tuple[int, int, np.ndarray, float]]) -> Path:
    """MOT Challenge results: ``frame,id,left,top,w,h,score,-1,-1,-1`` (1-based pixels)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for frame, tid, box, score in sorted(rows, key=lambda r: (r[0], r[1])):
        x1, y1, x2, y2 = (float(v) for v in box)
        lines.append(f"{frame},{tid},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                     f"{score:.4f},-1,-1,-1")
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return path


class VideoWriter:
    """H.264 mp4 frames with PyAV (frame size padded to even numbers for yuv420p)."""

    def __init__(self, path: str | Path, frame_rate: int):
        from personkit.track.deps import require

        self.av = require("av")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = max(1, int(frame_rate))
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
