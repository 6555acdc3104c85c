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
become 0-based ``x1 = bb_left - 1, y1 = bb_top - 1, x2 = x1 + w, y2 = y1 + h``.
"""

from __future__ import annotations

import configparser
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from personkit.data.io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BOX_EXTENSIONS = (".txt", ".csv", ".json")
InputKind = Literal["image", "crops", "mot"]


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


def read_mot(seq_dir: str | Path, source: Literal["auto", "det", "gt"] = "auto",
             min_score: float | None = None) -> list[Frame]:
    """Every frame of a MOT sequence with its boxes (see the module docstring for the rules).

    ``auto`` uses ``det/det.txt`` when present, else ``gt/gt.txt``. Frames without boxes are
    kept (with zero boxes).
    """
    seq_dir = Path(seq_dir)
    im_dir = seq_dir / _seqinfo(seq_dir).get("imdir", "img1")
    if source == "auto":
        source = "det" if (seq_dir / "det" / "det.txt").is_file() else "gt"
    if source not in ("det", "gt"):
        raise ValueError(f"MOT source must be 'auto', 'det' or 'gt', got {source!r}")
    table = _read_mot_table(seq_dir / source / f"{source}.txt")
    if source == "gt":
        keep = table[:, 6] != 0
        if table.shape[1] >= 8:
            keep &= (table[:, 7] == 1) | (table[:, 7] == -1)
    else:
        keep = np.ones(len(table), bool) if min_score is None else table[:, 6] >= min_score
    table = table[keep]
    frames = []
    for path in list_images(im_dir):
        if not path.stem.isdigit():
            continue
        rows = table[table[:, 0] == int(path.stem)]
        x1, y1 = rows[:, 2] - 1, rows[:, 3] - 1
        boxes = np.stack([x1, y1, x1 + rows[:, 4], y1 + rows[:, 5]], axis=1)
        frames.append(Frame(f"{int(path.stem):06d}", path, boxes, rows[:, 6],
                            rows[:, 1].astype(np.int64), int(path.stem)))
    if not frames:
        raise ValueError(f"no numbered frames (e.g. 000001.jpg) in {im_dir}")
    return frames


def _seqinfo(seq_dir: Path) -> dict[str, str]:
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


def _read_mot_table(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"MOT annotation file not found: {path}")
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.replace(" ", "").rstrip(",").split(",")])
        except ValueError:
            raise ValueError(f"{path}:{n}: not a MOT line (frame,id,left,top,w,h,conf,...): "
                             f"{line!r}") from None
        frame = rows[-1][0]
        if not (math.isfinite(frame) and frame.is_integer() and frame >= 1):
            raise ValueError(f"{path}:{n}: the frame number must be a whole number >= 1 "
                             f"(MOT frames are 1-based), got {line.split(',')[0].strip()!r}")
    width = max((len(r) for r in rows), default=7)
    table = np.full((len(rows), width), -1.0)  # short rows are padded with -1 ("unknown")
    for i, r in enumerate(rows):
        table[i, :len(r)] = r
    if table.size == 0:
        return np.zeros((0, 7))
    if table.shape[1] < 7:
        raise ValueError(f"{path}: expected at least 7 columns "
                         f"(frame,id,left,top,w,h,conf), got {table.shape[1]}")
    return table


@dataclass
class InputSource:
    """What ``personkit predict`` runs on: its kind and the frames."""

    kind: InputKind
    frames: list[Frame] = field(default_factory=list)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def open_input(path: str | Path, boxes: str | Path | None = None,
               mot_source: Literal["auto", "det", "gt"] = "auto",
               min_score: float | None = None) -> InputSource:
    """Detect the kind of ``path`` and list its frames.

    * a MOT sequence folder (``img1/`` plus ``det/det.txt`` or ``gt/gt.txt``);
    * any other folder: person crops (every image in it);
    * an image file: needs ``boxes``, or a boxes file next to it with the same stem
      (``.txt``, ``.csv`` or ``.json``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        if is_mot_sequence(path):
            return InputSource("mot", read_mot(path, mot_source, min_score))
        crops = list_images(path)
        if not crops:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return InputSource("crops", [Frame(p.stem, p) for p in crops])
    if boxes is None:
        found = [path.with_suffix(ext) for ext in BOX_EXTENSIONS if path.with_suffix(ext).is_file()]
        if not found:
            raise ValueError(f"image input {path} needs a boxes file: pass --boxes, or put "
                             f"{path.stem}.txt/.csv/.json next to it")
        boxes = found[0]
    table = read_boxes(boxes)
    return InputSource("image", [Frame(path.stem, path, table[:, :4], table[:, 4])])
