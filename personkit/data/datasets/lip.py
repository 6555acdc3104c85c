"""LIP (Look Into Person), single-person human parsing and pose.

Liang et al., "Look into Person: Joint Body Parsing & Pose Estimation Network and a New
Benchmark", TPAMI 2018 (http://sysu-hcp.net/lip/). 30,462 train and 10,000 val images.

Two layouts are accepted for split "train" or "val" (shown for train):

* the official archives, with or without the doubled folder::

    TrainVal_images/[TrainVal_images/]train_images/<id>.jpg      (+ train_id.txt)
    TrainVal_parsing_annotations/[TrainVal_parsing_annotations/]train_segmentations/<id>.png
    TrainVal_pose_annotations/lip_train_set.csv

* the flattened one of SCHP/CE2P: ``train_images/``, ``train_segmentations/``,
  ``train_id.txt`` (and optionally ``lip_train_set.csv``) directly under ``root``.

Images are listed from ``<split>_id.txt`` when present, else from the image folder; sorted by id.
Parsing PNGs hold the 20 LIP class ids (255 = ignore). Pose CSV rows are headerless: the image
name, then 16 × (x, y, v) in MPII joint order, ``nan`` for a missing joint; ``v`` = 1 means
*occluded*. Coordinates are taken as 0-based pixels (the CSV gives no convention).
``head_size`` = ‖head top − upper neck‖ (NaN if either is missing), as GC's ``calc_pckh.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from personkit.data.constants import NUM_JOINTS
from personkit.data.io import DatasetError, first_existing, read_text
from personkit.data.records import PersonRecord

LIP_SPLITS = ("train", "val")
_Pose = tuple[np.ndarray, np.ndarray, np.ndarray]  # joints, annotated, occluded


def lip_head_size(joints: ArrayLike, annotated: ArrayLike | None = None) -> np.ndarray:
    """LIP head size: ``||head top (9) - upper neck (8)||`` with no factor (gccpm).

    Args:
        joints: ``(..., 16, 2)`` ground-truth joints; missing joints may be NaN.
        annotated: ``(..., 16)`` bool; defaults to "coordinates are finite".

    Returns:
        ``(...)`` head sizes, NaN where either joint is missing (the person is skipped).
    """
    j = np.asarray(joints, dtype=np.float64)
    ok = np.isfinite(j).all(-1)
    if annotated is not None:
        ok &= np.asarray(annotated, dtype=bool)
    size = np.linalg.norm(j[..., 9, :] - j[..., 8, :], axis=-1)
    return np.where(ok[..., 8] & ok[..., 9], size, np.nan)


def read_lip(root: str | Path, split: str, parsing: bool = True,
             pose: bool = True) -> list[PersonRecord]:
    """Records of LIP split "train" or "val"; ``parsing``/``pose`` select the label sources."""
    if split not in LIP_SPLITS:
        raise ValueError(f"LIP: unknown split {split!r}; valid: {list(LIP_SPLITS)}")
    root = Path(root)
    images = _locate(root, "TrainVal_images", f"{split}_images", "image folder")
    masks = _locate(root, "TrainVal_parsing_annotations", f"{split}_segmentations",
                    "parsing folder") if parsing else None
    poses: dict[str, _Pose] = {}
    if pose:
        poses = read_lip_pose_csv(_locate(root, "TrainVal_pose_annotations",
                                          f"lip_{split}_set.csv", "pose file"))
    records = []
    for image_id in _image_ids(root, images, split):
        joints, annotated, occluded = poses.get(image_id, (None, None, None))
        records.append(PersonRecord(
            image_path=images / f"{image_id}.jpg",
            mask_path=None if masks is None else masks / f"{image_id}.png",
            joints=joints, joints_annotated=annotated, joints_occluded=occluded,
            head_size=None if joints is None else _head_size(joints)))
    return records


def _locate(root: Path, archive: str, name: str, what: str) -> Path:
    """``name`` in the nested, singly nested or flattened layout."""
    return first_existing([root / archive / archive / name, root / archive / name, root / name],
                          "LIP", f"the {what} {name!r}")


def _image_ids(root: Path, images: Path, split: str) -> list[str]:
    """Sorted ids from ``<split>_id.txt`` (next to the image folder or in root), else a listing."""
    for id_file in (images.parent / f"{split}_id.txt", root / f"{split}_id.txt"):
        if id_file.is_file():
            ids = sorted({line.strip() for line in read_text(id_file, "LIP").splitlines()}
                         - {""})
            break
    else:
        ids = sorted(p.stem for p in images.glob("*.jpg"))
    if not ids:
        raise DatasetError(f"LIP: no images listed for split {split!r} in {images}")
    return ids


def read_lip_pose_csv(path: Path) -> dict[str, _Pose]:
    """Image id -> (joints 16×2 float32 with NaN, annotated, occluded) from a LIP pose CSV.

    Raises:
        DatasetError: a row without 1 + 48 columns or with a non-numeric value; the message
            names the file and the 1-based line number.
    """
    poses: dict[str, _Pose] = {}
    for line_no, line in enumerate(read_text(path, "LIP").splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 1 + 3 * NUM_JOINTS:
            raise DatasetError(f"{path}:{line_no}: expected the image name and "
                               f"{3 * NUM_JOINTS} values, got {len(cells) - 1} values")
        try:
            values = np.array([float(c) for c in cells[1:]], dtype=np.float32).reshape(-1, 3)
        except ValueError as e:
            raise DatasetError(f"{path}:{line_no}: non-numeric value ({e})") from e
        joints = values[:, :2].copy()
        annotated = np.isfinite(joints).all(1)
        joints[~annotated] = np.nan
        poses[Path(cells[0]).stem] = (joints, annotated, annotated & (values[:, 2] == 1))
    return poses


def _head_size(joints: np.ndarray) -> float:
    """PCKh normaliser (:func:`personkit.metrics.pose.lip_head_size`); NaN if missing."""
    return float(lip_head_size(joints))
