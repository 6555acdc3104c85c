"""Inputs of ``personkit predict``: an image with a boxes file, a folder of crops, or a MOT
Challenge sequence.

Boxes file (``.txt``/``.csv``): one box per line, ``x1,y1,x2,y2[,score]`` in image pixels
(commas or whitespace; blank lines and ``#`` comments are skipped). ``.json``: a list whose
items are ``[x1, y1, x2, y2(, score)]`` or ``{"box": [x1, y1, x2, y2], "score": s}``
(``bbox`` is accepted for ``box``), optionally wrapped as ``{"boxes": [...]}``.

MOT Challenge sequences: ``img1/000001.jpg, ...`` and ``det/det.txt`` or ``gt/gt.txt``, read
by :mod:`personkit.data.mot` (the rules are there; one parser serves ``predict``, ``track`` and
``index``): every frame with its boxes (:func:`read_mot`).

Source names (a sequence's, a video's) must be UTF-8 text to reach any output
(:func:`check_name`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from personkit.data.io import image_size, read_image, read_utf8
from personkit.data.mot import (
    IMAGE_EXTENSIONS,
    check_rows_within,
    is_mot_sequence,
    list_images,
    mot_images,
    read_mot_rows,
    resolve_mot_source,
)
from personkit.data.urls import redact

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


def _text_boxes(path: Path) -> list[list[float]]:
    rows = []
    for n, line in enumerate(read_utf8(path).splitlines(), start=1):
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
        data = json.loads(read_utf8(path))
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


def shown_path(path: str | Path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (a str with surrogate escapes on
    POSIX) shown as ``\\xNN``, a stream address's password as ``***``."""
    return redact(os.fsencode(str(path)).decode("utf-8", "backslashreplace"))


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


def read_mot(seq_dir: str | Path, source: Literal["auto", "det", "gt"] = "auto",
             min_score: float | None = None) -> list[Frame]:
    """Every frame of a MOT sequence with its boxes (the rules: :mod:`personkit.data.mot`).

    ``auto`` uses ``det/det.txt`` when present, else ``gt/gt.txt``. Frames without boxes are
    kept (with zero boxes); frames missing from the image folder and rows for frames beyond
    the sequence are errors (:func:`~personkit.data.mot.mot_images`,
    :func:`~personkit.data.mot.check_rows_within`).
    """
    seq_dir = Path(seq_dir)
    _, im_dir, images = mot_images(seq_dir)
    name = resolve_mot_source(seq_dir, source)
    rows = read_mot_rows(seq_dir / name / f"{name}.txt", name == "gt", min_score)
    check_rows_within(rows, len(images), im_dir)
    boxes, table, groups = rows.boxes(), rows.table, rows.frame_rows()
    frames, none = [], np.zeros(0, np.int64)
    for t, path in enumerate(images, start=1):
        sel = groups.get(t, none)
        frames.append(Frame(f"{t:06d}", path, boxes[sel], table[sel, 6],
                            table[sel, 1].astype(np.int64), t))
    return frames


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
