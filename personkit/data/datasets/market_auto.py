"""Automatic (pseudo) pose and part annotations for Market-1501 (Pfeiffer et al., GCPR 2019,
Sec. 4.1): predictions of baseline models trained on MPII/LIP, stored next to the dataset.

Format (a folder, default ``<Market root>/auto_annotations``; see docs/datasets.md)::

    pose.csv      header  image,x0,y0,c0,...,x15,y15,c15
                  image:  path relative to the Market root, '/'-separated
                          (bounding_box_train/0002_c1s1_000451_03.jpg)
                  x, y:   0-based pixel centres in the original crop; c: confidence in [0, 1];
                          an empty cell or nan = no prediction. MPII joint order.
    parts/<folder>/<file name>.png   e.g. parts/bounding_box_train/0002_c1s1_000451_03.jpg.png
                  single-channel 8-bit PNG of the crop's size holding LIP class ids
                  (0-19, 255 = unknown), as the authors' layout.

:func:`read_market_auto` merges these into Market records (``joints``, ``joints_annotated``,
``mask_path``); a joint below ``min_confidence`` counts as unannotated. Images without a row
or PNG keep ``joints``/``mask_path`` None. :func:`write_market_auto` writes the format.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import cv2
import numpy as np

from personkit.data.constants import NUM_JOINTS
from personkit.data.datasets.market1501 import REID_SPLITS, dataset_root, read_market1501
from personkit.data.io import DatasetError, read_text, require_dir, require_file
from personkit.data.records import PersonRecord

POSE_HEADER: tuple[str, ...] = ("image",) + tuple(
    f"{c}{j}" for j in range(NUM_JOINTS) for c in ("x", "y", "c"))


class AutoAnnotation(NamedTuple):
    """One image's pseudo-annotation as :func:`write_market_auto` takes it."""

    image: str  # relative to the Market root, e.g. "bounding_box_train/0002_c1s1_000451_03.jpg"
    joints: np.ndarray | None = None  # (16, 2) 0-based crop pixels, NaN = none
    confidence: np.ndarray | None = None  # (16,) in [0, 1]; None = all 1
    parts: np.ndarray | None = None  # (H, W) uint8 LIP class ids at the crop's size


def read_market_auto(root: str | Path, split: str = "train",
                     annotations: str | Path | None = None, min_confidence: float = 0.0,
                     pose: bool = True, parts: bool = True, attributes: bool = True,
                     attribute_file: str | Path | None = None) -> list[PersonRecord]:
    """Market-1501 records of ``split`` with the pseudo-annotations merged in."""
    records = read_market1501(root, split, attributes, attribute_file)
    folder = Path(annotations) if annotations else (
        dataset_root(Path(root), "Market-1501-v15.09.15") / "auto_annotations")
    require_dir(folder, "Market-1501 automatic annotations")
    poses = read_auto_pose(require_file(folder / "pose.csv", "Market-1501 automatic "
                                        "annotations"), min_confidence) if pose else {}
    part_dir = require_dir(folder / "parts", "Market-1501 automatic annotations") if parts \
        else None
    subfolder = REID_SPLITS[split]
    merged = []
    for r in records:
        joints, annotated = poses.get(f"{subfolder}/{r.image_path.name}", (None, None))
        mask = None if part_dir is None else part_dir / subfolder / f"{r.image_path.name}.png"
        merged.append(dataclasses.replace(
            r, joints=joints, joints_annotated=annotated,
            mask_path=mask if mask is not None and mask.is_file() else None))
    return merged


def read_auto_pose(path: Path, min_confidence: float = 0.0) -> dict[str, tuple]:
    """Relative image path -> (joints 16×2 with NaN, annotated) from ``pose.csv``."""
    poses = {}
    text = read_text(path, "Market-1501 automatic annotations")
    for line_no, row in enumerate(csv.reader(text.splitlines()), 1):
        if line_no == 1:
            if tuple(c.strip() for c in row) != POSE_HEADER:
                raise DatasetError(f"{path}:1: expected the header "
                                   f"{','.join(POSE_HEADER[:4])},...,c{NUM_JOINTS - 1}")
            continue
        if not row:
            continue
        if len(row) != len(POSE_HEADER):
            raise DatasetError(f"{path}:{line_no}: expected {len(POSE_HEADER)} columns, "
                               f"got {len(row)}")
        try:
            values = np.array([float(c) if c.strip() else np.nan for c in row[1:]],
                              dtype=np.float32).reshape(NUM_JOINTS, 3)
        except ValueError as e:
            raise DatasetError(f"{path}:{line_no}: non-numeric value ({e})") from e
        annotated = np.isfinite(values).all(1) & (values[:, 2] >= min_confidence)
        joints = np.where(annotated[:, None], values[:, :2], np.nan).astype(np.float32)
        poses[row[0].strip()] = (joints, annotated)
    return poses


def write_market_auto(out_dir: str | Path, annotations: Iterable[AutoAnnotation]) -> int:
    """Write pseudo-annotations in the format above; returns the number of images written.

    A row goes to ``pose.csv`` for every annotation with joints, a PNG to ``parts/`` for every
    one with a part mask. ``annotations`` may be a generator (written as it is consumed).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out_dir / "pose.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(POSE_HEADER)
        for a in annotations:
            image = PurePosixPath(a.image)
            if image.is_absolute() or len(image.parts) != 2:
                raise ValueError(f"image must be '<folder>/<file name>', got {a.image!r}")
            if a.joints is not None:
                writer.writerow([str(image), *_pose_cells(a.joints, a.confidence)])
            if a.parts is not None:
                _write_png(out_dir / "parts" / image.parent / f"{image.name}.png", a.parts)
            count += 1
    return count


def _pose_cells(joints: np.ndarray, confidence: np.ndarray | None) -> list[str]:
    joints = np.asarray(joints, dtype=np.float64).reshape(NUM_JOINTS, 2)
    conf = np.ones(NUM_JOINTS) if confidence is None else np.asarray(confidence, np.float64)
    cells = []
    for (x, y), c in zip(joints, conf.reshape(NUM_JOINTS), strict=True):
        ok = np.isfinite(x) and np.isfinite(y) and np.isfinite(c)
        cells += [f"{x:.2f}", f"{y:.2f}", f"{c:.4f}"] if ok else ["", "", ""]
    return cells


def _write_png(path: Path, mask: np.ndarray) -> None:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"part mask for {path.name} must be 2-D uint8, got {mask.dtype} "
                         f"{mask.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", mask)
    if not ok:
        raise OSError(f"cannot encode {path}")
    buf.tofile(path)
