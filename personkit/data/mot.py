"""MOT Challenge files (Milan et al., arXiv:1603.00831), read and written in one place for
``predict``, ``track``, ``index``, detector training and evaluation: sequence info
(``seqinfo.ini``, :func:`read_seqinfo`, :func:`mot_images`), annotation rows
(:func:`read_mot_rows`), detections grouped by frame (:func:`read_detections`), tracking results
(:func:`write_mot_results`), and image listing (:func:`list_images`).

A sequence is ``img1/000001.jpg, ...`` (``imDir`` of ``seqinfo.ini``) with ``det/det.txt`` or
``gt/gt.txt``, lines ``frame,id,bb_left,bb_top,bb_width,bb_height,conf,...`` (1-based frames and
pixels). ``det`` keeps every detection (optionally those with ``conf >= min_score``). ``gt``
keeps pedestrians only: the 7th column (the "consider" flag in MOT16/17/20, the confidence in
MOT15) must be non-zero and, where an 8th column holds a class (not -1), it must be 1
(pedestrian). Boxes become 0-based ``x1 = bb_left - 1, y1 = bb_top - 1, x2 = x1 + w, y2 = y1 +
h``. Every row needs at least 7 finite numbers and a whole frame number >= 1; the frames must
be ``1..N`` without gaps in the image folder (N: ``seqLength`` of ``seqinfo.ini`` when given),
and a row for a frame beyond N is an error. Detections a tracker follows also need boxes with
an area (:func:`read_detections`). Every error names the file and line.

Frame rates are kept exact (``frameRate=12.5`` in ``seqinfo.ini``: :func:`exact_rate`).
"""

from __future__ import annotations

import configparser
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personkit.data.io import read_utf8

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def is_mot_sequence(path: str | Path) -> bool:
    """Whether ``path`` is a MOT sequence folder: ``img1/`` and ``det/det.txt`` or
    ``gt/gt.txt``."""
    path = Path(path)
    return (path / "img1").is_dir() and any(
        (path / f).is_file() for f in ("det/det.txt", "gt/gt.txt"))


def read_seqinfo(seq_dir: Path) -> dict[str, str]:
    """The ``[Sequence]`` keys of a MOT ``seqinfo.ini`` (lower-case; empty without one).

    Raises:
        ValueError: a malformed file, or an ``imDir`` outside the sequence.
    """
    ini = seq_dir / "seqinfo.ini"
    if not ini.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read_string(read_utf8(ini), source=str(ini))
    except configparser.Error as e:
        raise ValueError(f"{ini}: malformed seqinfo.ini ({e.message.splitlines()[0]})") from e
    info = dict(parser["Sequence"]) if parser.has_section("Sequence") else {}
    im_dir = info.get("imdir", "img1")
    if not im_dir or Path(im_dir).is_absolute() or ".." in Path(im_dir).parts:
        raise ValueError(f"{ini}: imDir must be a folder inside the sequence, got {im_dir!r}")
    return info


def mot_images(seq_dir: str | Path) -> tuple[dict[str, str], Path, list[Path]]:
    """``seqinfo.ini`` (lower-case keys), the image folder and its frames ``1..N`` in order.

    N is ``seqLength`` when ``seqinfo.ini`` gives it, else the highest frame number; a frame
    missing from the folder is a ValueError naming the folder and the missing numbers.
    """
    seq_dir = Path(seq_dir)
    info = read_seqinfo(seq_dir)
    im_dir = seq_dir / info.get("imdir", "img1")
    if not im_dir.is_dir():
        raise FileNotFoundError(f"MOT sequence {seq_dir} has no image folder {im_dir.name}/")
    images = {int(p.stem): p for p in list_images(im_dir) if p.stem.isdigit()}
    if not images:
        raise ValueError(f"no numbered frames (e.g. 000001.jpg) in {im_dir}")
    try:
        length = int(info.get("seqlength", max(images)))
    except ValueError:
        raise ValueError(f"{seq_dir / 'seqinfo.ini'}: seqLength must be a whole number, got "
                         f"{info['seqlength']!r}") from None
    missing = [t for t in range(1, length + 1) if t not in images]
    if missing:
        shown = ", ".join(str(t) for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{im_dir}: {len(missing)} of {length} frames missing "
                         f"(frame numbers {shown})")
    return info, im_dir, [images[t] for t in range(1, length + 1)]


def resolve_mot_source(seq_dir: str | Path, source: str = "auto") -> str:
    """``det`` or ``gt``; ``auto`` is ``det`` when ``det/det.txt`` exists, else ``gt``."""
    if source == "auto":
        return "det" if (Path(seq_dir) / "det" / "det.txt").is_file() else "gt"
    if source not in ("det", "gt"):
        raise ValueError(f"MOT source must be 'auto', 'det' or 'gt', got {source!r}")
    return source


def exact_rate(rate: float | str) -> float:
    """A frame rate as a float, kept exact (a PyAV ``Fraction`` such as 25/2 or 30000/1001 to
    the nearest double); a whole number as an ``int``, so outputs of integer rates read as
    before (``10``, not ``10.0``)."""
    value = float(rate)
    return int(value) if value.is_integer() else value


def seqinfo_frame_rate(seq_dir: str | Path, info: dict[str, str], default: int = 30) -> float:
    """``frameRate`` of a MOT ``seqinfo.ini`` (``info``: :func:`read_seqinfo`), fractional rates
    such as 12.5 included (:func:`exact_rate`); ``default`` without one.

    Raises:
        ValueError: a value that is not a positive finite number (naming the file and value).
    """
    text = info.get("framerate")
    if text is None:
        return default
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{Path(seq_dir) / 'seqinfo.ini'}: frameRate must be a positive number "
                         f"of frames per second, got {text!r}")
    return exact_rate(rate)


@dataclass
class MotRows:
    """The rows of a MOT ``det.txt``/``gt.txt`` (one parser for ``predict`` and ``track``).

    ``table`` is ``N×C`` (C >= 7; shorter rows of a wider file padded with -1, "unknown"),
    ``lines`` the 1-based line of each row in ``path`` (for errors naming the line).
    """

    path: Path
    table: np.ndarray
    lines: np.ndarray

    def boxes(self) -> np.ndarray:
        """``N×4`` 0-based ``x1, y1, x2, y2`` (``x1 = bb_left - 1``)."""
        x1, y1 = self.table[:, 2] - 1, self.table[:, 3] - 1
        return np.stack([x1, y1, x1 + self.table[:, 4], y1 + self.table[:, 5]], axis=1)

    def select(self, keep: np.ndarray) -> MotRows:
        """The rows where ``keep`` is true (a mask or indices)."""
        return MotRows(self.path, self.table[keep], self.lines[keep])

    def frame_rows(self) -> dict[int, np.ndarray]:
        """The rows of each frame that has any: 1-based frame -> row indices, in file order
        (the one grouping of rows by frame, for ``predict`` and ``track``)."""
        frames = self.table[:, 0]
        return {int(t): np.flatnonzero(frames == t) for t in np.unique(frames)}


def read_mot_rows(path: str | Path, gt: bool = False,
                  min_score: float | None = None) -> MotRows:
    """Parse a MOT ``det.txt`` (or, with ``gt``, a ``gt.txt``: considered pedestrians only).

    Every row needs at least 7 finite numbers ``frame,id,left,top,w,h,conf`` with a whole
    frame number >= 1; anything else is a ValueError naming the file and line.
    """
    path = Path(path)
    table, lines = _read_mot_table(path)
    rows = MotRows(path, table, lines)
    if gt:
        keep = table[:, 6] != 0
        if table.shape[1] >= 8:
            keep &= (table[:, 7] == 1) | (table[:, 7] == -1)
        return rows.select(keep)
    return rows if min_score is None else rows.select(table[:, 6] >= min_score)


def _read_mot_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"MOT annotation file not found: {path}")
    rows, lines = [], []
    for n, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.replace(" ", "").rstrip(",").split(",")]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a MOT line (frame,id,left,top,w,h,conf,...): "
                             f"{line!r}") from None
        if len(row) < 7 or not all(math.isfinite(v) for v in row[:7]):
            raise ValueError(f"{path}:{n}: expected at least 7 finite numbers "
                             f"(frame,id,left,top,w,h,conf), got {line!r}")
        if not (row[0].is_integer() and row[0] >= 1):
            raise ValueError(f"{path}:{n}: the frame number must be a whole number >= 1 "
                             f"(MOT frames are 1-based), got {line.split(',')[0].strip()!r}")
        rows.append(row)
        lines.append(n)
    width = max((len(r) for r in rows), default=7)
    table = np.full((len(rows), width), -1.0)  # short rows are padded with -1 ("unknown")
    for i, r in enumerate(rows):
        table[i, :len(r)] = r
    return table, np.array(lines, dtype=np.int64)


def check_rows_within(rows: MotRows, n_frames: int, where: Path | str) -> None:
    """A ValueError naming the file and line of the first row beyond frame ``n_frames``."""
    beyond = np.flatnonzero(rows.table[:, 0] > n_frames)
    if beyond.size:
        i = beyond[0]
        raise ValueError(f"{rows.path}:{int(rows.lines[i])}: detections for frame "
                         f"{int(rows.table[i, 0])}, beyond the {n_frames} frames of {where}")


@dataclass
class Detections:
    """Detections of a whole sequence, grouped by 1-based frame number."""

    path: Path
    boxes: dict[int, np.ndarray]  # frame -> N×4 xyxy (0-based pixels)
    scores: dict[int, np.ndarray]
    gt_ids: dict[int, np.ndarray]
    lines: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> the rows' lines

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes and scores of frame ``t`` (none when it has no rows)."""
        return self.boxes.get(t, np.zeros((0, 4))), self.scores.get(t, np.zeros(0))


def read_detections(path: str | Path, gt: bool = False, n_frames: int | None = None,
                    where: str | Path = "the sequence") -> Detections:
    """Parse a MOT ``det.txt`` (or, with ``gt``, a ``gt.txt``: pedestrians marked considered)
    with :func:`read_mot_rows`, the parser ``predict`` uses, grouped by frame, and require
    boxes with an area (a tracker's motion model cannot follow an empty box). With
    ``n_frames``, a row for a later frame than that (of ``where``) is an error too.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a bad row (see the module docstring), naming the file and line.
    """
    rows = read_mot_rows(path, gt=gt)
    if n_frames is not None:
        check_rows_within(rows, n_frames, where)
    bad = np.flatnonzero((rows.table[:, 4] <= 0) | (rows.table[:, 5] <= 0))
    if bad.size:
        i = bad[0]
        raise ValueError(f"{rows.path}:{int(rows.lines[i])}: box width and height must be > 0, "
                         f"got {rows.table[i, 4]:g} x {rows.table[i, 5]:g}")
    table, all_boxes = rows.table, rows.boxes()
    boxes, scores, ids, lines = {}, {}, {}, {}
    for t, sel in rows.frame_rows().items():
        boxes[t] = all_boxes[sel]
        scores[t] = np.clip(table[sel, 6], 0, 1) if not gt else np.ones(len(sel))
        ids[t] = table[sel, 1].astype(np.int64)
        lines[t] = np.asarray(rows.lines)[sel]
    return Detections(rows.path, boxes, scores, ids, lines)



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
