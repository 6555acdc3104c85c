"""Inputs of ``personkit predict``: an image with a boxes file, a folder of crops, or a MOT
Challenge sequence.

Boxes file (``.txt``/``.csv``): one box per line, ``x1,y1,x2,y2[,score]`` in image pixels
(commas or whitespace; blank lines and ``#`` comments are skipped). ``.json``: a list whose
items are ``[x1, y1, x2, y2(, score)]`` or ``{"box": [x1, y1, x2, y2], "score": s}``
(``bbox`` is accepted for ``box``), optionally wrapped as ``{"boxes": [...]}``.

MOT Challenge sequences (Milan et al., arXiv:1603.00831): ``img1/000001.jpg, ...`` and
``det/det.txt`` or ``gt/gt.txt`` with lines
``frame,id,bb_left,bb_top,bb_width,bb_height,conf,...`` (1-based frames and pixels). ``det``
keeps every detection (optionally those with ``conf >= min_score``). ``gt`` keeps pedestrians
only: the 7th column (the "consider" flag in MOT16/17/20, the confidence in MOT15) must be
non-zero and, where an 8th column holds a class (not -1), it must be 1 (pedestrian). Boxes
become 0-based ``x1 = bb_left - 1, y1 = bb_top - 1, x2 = x1 + w, y2 = y1 + h``. Every row
needs at least 7 finite numbers and a whole frame number >= 1; the frames must be ``1..N``
without gaps in the image folder (N: ``seqLength`` of ``seqinfo.ini`` when given), and a row
for a frame beyond N is an error. One parser serves ``predict`` and ``track``
(:func:`read_mot_rows`, :func:`mot_images`).
"""

from __future__ import annotations

import configparser
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from personkit.data.io import image_size, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BOX_EXTENSIONS = (".txt", ".csv", ".json")
InputKind = Literal["image", "crops", "mot", "frames"]


@dataclass
class Frame:
    """One image to run on: ``boxes`` is ``None`` for a person crop (the whole image)."""

    name: str
    path: Path
    boxes: np.ndarray | None = None  # N×4 x1, y1, x2, y2
    scores: np.ndarray | None = None  # N
    ids: np.ndarray | None = None  # N track ids (MOT gt), -1 when unknown
    frame: int | None = None  # 1-based MOT frame number

    def load(self) -> np.ndarray:
        return read_image(self.path)


def read_boxes(path: str | Path) -> np.ndarray:
    """An ``N×5`` float array ``x1, y1, x2, y2, score`` (score 1 when absent) from a boxes file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line or item that is not 4 or 5 numbers (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes file not found: {path}")
    rows = _json_boxes(path) if path.suffix.lower() == ".json" else _text_boxes(path)
    out = np.ones((len(rows), 5))
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _read_text(path: Path) -> str:
    """A text file as UTF-8; a ValueError naming the file and the line of the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _text_boxes(path: Path) -> list[list[float]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            values = [float(v) for v in re.split(r"[,\s]+", line) if v]
        except ValueError:
            values = []
        if len(values) not in (4, 5):
            raise ValueError(f"{path}:{n}: expected 'x1,y1,x2,y2[,score]', got {line!r}")
        rows.append(values)
    return rows


def _json_boxes(path: Path) -> list[list[float]]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from e
    if isinstance(data, dict):
        data = data.get("boxes")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of boxes or {{'boxes': [...]}}")
    rows = []
    for n, item in enumerate(data):
        if isinstance(item, dict):
            box = item.get("box", item.get("bbox"))
            item = None if box is None else list(box) + ([item["score"]] if "score" in item else [])
        try:
            values = [float(v) for v in item]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            values = []
        if len(values) not in (4, 5):
            raise ValueError(f"{path}: box {n}: expected [x1, y1, x2, y2(, score)], got {item!r}")
        rows.append(values)
    return rows


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def is_mot_sequence(path: str | Path) -> bool:
    path = Path(path)
    return (path / "img1").is_dir() and any(
        (path / f).is_file() for f in ("det/det.txt", "gt/gt.txt"))


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
        return MotRows(self.path, self.table[keep], self.lines[keep])


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


def shown_path(path: str | Path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (a str with surrogate escapes on
    POSIX) shown as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def check_name(name: str, path: str | Path, fix: str = "rename it") -> str:
    """``name`` (a sequence or source name taken from ``path``) when it is UTF-8 text.

    A file or folder name holding bytes that are not UTF-8 reaches Python as a str with
    surrogate escapes, which no output (``tracks.json``, the index) can hold: a ValueError
    naming the path and saying how to fix it (``fix``), before any frame is tracked.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{shown_path(path)}: the name '{shown_path(name)}' is not UTF-8 text "
                         f"(outputs and indexes hold UTF-8 names); {fix}") from None
    return name


def check_rows_within(rows: MotRows, n_frames: int, where: Path | str) -> None:
    """A ValueError naming the file and line of the first row beyond frame ``n_frames``."""
    beyond = np.flatnonzero(rows.table[:, 0] > n_frames)
    if beyond.size:
        i = beyond[0]
        raise ValueError(f"{rows.path}:{int(rows.lines[i])}: detections for frame "
                         f"{int(rows.table[i, 0])}, beyond the {n_frames} frames of {where}")


def read_mot(seq_dir: str | Path, source: Literal["auto", "det", "gt"] = "auto",
             min_score: float | None = None) -> list[Frame]:
    """Every frame of a MOT sequence with its boxes (see the module docstring for the rules).

    ``auto`` uses ``det/det.txt`` when present, else ``gt/gt.txt``. Frames without boxes are
    kept (with zero boxes); frames missing from the image folder and rows for frames beyond
    the sequence are errors (:func:`mot_images`, :func:`check_rows_within`).
    """
    seq_dir = Path(seq_dir)
    _, im_dir, images = mot_images(seq_dir)
    name = resolve_mot_source(seq_dir, source)
    rows = read_mot_rows(seq_dir / name / f"{name}.txt", name == "gt", min_score)
    check_rows_within(rows, len(images), im_dir)
    boxes, table = rows.boxes(), rows.table
    frames = []
    for t, path in enumerate(images, start=1):
        sel = table[:, 0] == t
        frames.append(Frame(f"{t:06d}", path, boxes[sel], table[sel, 6],
                            table[sel, 1].astype(np.int64), t))
    return frames


def resolve_mot_source(seq_dir: str | Path, source: str = "auto") -> str:
    """``det`` or ``gt``; ``auto`` is ``det`` when ``det/det.txt`` exists, else ``gt``."""
    if source == "auto":
        return "det" if (Path(seq_dir) / "det" / "det.txt").is_file() else "gt"
    if source not in ("det", "gt"):
        raise ValueError(f"MOT source must be 'auto', 'det' or 'gt', got {source!r}")
    return source


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
        parser.read_string(_read_text(ini), source=str(ini))
    except configparser.Error as e:
        raise ValueError(f"{ini}: malformed seqinfo.ini ({e.message.splitlines()[0]})") from e
    info = dict(parser["Sequence"]) if parser.has_section("Sequence") else {}
    im_dir = info.get("imdir", "img1")
    if not im_dir or Path(im_dir).is_absolute() or ".." in Path(im_dir).parts:
        raise ValueError(f"{ini}: imDir must be a folder inside the sequence, got {im_dir!r}")
    return info


def _read_mot_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"MOT annotation file not found: {path}")
    rows, lines = [], []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
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


@dataclass
class InputSource:
    """What ``personkit predict`` runs on: its kind and the frames."""

    kind: InputKind
    frames: list[Frame] = field(default_factory=list)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def _wider_than_tall(path: Path) -> str | None:
    """``NAME is W×H`` when the image's header says it is wider than tall, else None."""
    size = image_size(np.fromfile(path, np.uint8, count=1 << 18))
    if size is not None and size[0] > size[1]:
        return f"{path.name} is {size[0]}×{size[1]}, wider than tall"
    return None


def open_input(path: str | Path, boxes: str | Path | None = None,
               mot_source: Literal["auto", "det", "gt"] = "auto",
               min_score: float | None = None, crops: bool = False) -> InputSource:
    """Detect the kind of ``path`` and list its frames.

    * a MOT sequence folder (``img1/`` plus ``det/det.txt`` or ``gt/gt.txt``);
    * any other folder: person crops (every image in it). A person crop is taller than wide:
      a folder holding an image wider than tall looks like full frames and is refused (a full
      frame predicted as one person gives nonsense), unless ``crops`` says they are crops;
    * an image file: needs ``boxes``, or a boxes file next to it with the same stem
      (``.txt``, ``.csv`` or ``.json``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        if is_mot_sequence(path):
            return InputSource("mot", read_mot(path, mot_source, min_score))
        images = list_images(path)
        if not images:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        wide = None if crops else next((w for p in images if (w := _wider_than_tall(p))), None)
        if wide:
            raise ValueError(f"{path} looks like full frames, not person crops ({wide}): give "
                             f"person boxes (a boxes file per image, IMAGE.txt next to it or "
                             f"--boxes), a MOT sequence folder (img1/ + det/det.txt), or crops; "
                             f"if these are crops, pass --crops")
        return InputSource("crops", [Frame(p.stem, p) for p in images])
    if boxes is None:
        found = [path.with_suffix(ext) for ext in BOX_EXTENSIONS if path.with_suffix(ext).is_file()]
        if not found:
            raise ValueError(f"image input {path} needs a boxes file: pass --boxes, or put "
                             f"{path.stem}.txt/.csv/.json next to it")
        boxes = found[0]
    table = read_boxes(boxes)
    return InputSource("image", [Frame(path.stem, path, table[:, :4], table[:, 4])])


def open_frames(path: str | Path) -> InputSource:
    """Frames for a detector to find people in (``--detector``): an image, a folder of
    images, or a MOT sequence's images (its ``det.txt`` is not read); sorted by name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_file():
        return InputSource("frames", [Frame(path.stem, path)])
    if is_mot_sequence(path):
        _, _, images = mot_images(path)
        return InputSource("frames", [Frame(p.stem, p, frame=i + 1)
                                      for i, p in enumerate(images)])
    images = list_images(path)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
    return InputSource("frames", [Frame(p.stem, p) for p in images])
