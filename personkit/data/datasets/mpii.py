"""MPII Human Pose, single-person protocol, with the standard (Tompson et al.) validation split.

Andriluka et al., CVPR 2014 (http://human-pose.mpi-inf.mpg.de); split: Tompson et al., CVPR 2015.
Layout: ``root/images/*.jpg`` plus one of two annotation forms:

* the official ``mpii_human_pose_v1_u12_1.mat`` (``RELEASE``; in ``root``,
  ``root/mpii_human_pose_v1_u12_2/`` or ``annotation_file``) with a validation list
  (``val_list``, default ``root/valid_images.txt``) whose lines are an image name (every
  single-person rect of that image) or an image name and a 1-based ``annorect`` index
  (``005808361.jpg 2``: that person only). "val" is the listed persons; "train" is every
  single-person rect with ``img_train = 1`` of the *other* images (validation images are held
  out whole). Rects without ``annopoints`` are skipped.
* the JSON form (HRNet ``annot/{train,valid}.json``, mmpose ``mpii_{train,val}.json``): a list
  of ``{image, center, scale, joints (16 × [x, y]), joints_vis}``, ``joints_vis`` = annotated.
  Head boxes come from an optional per-entry key ``head_box`` ``[x1, y1, x2, y2]`` or from
  ``head_boxes``, a ``gt_valid.mat`` (``headboxes_src`` 2×2×N in file order); else None.

Sizes: 2,958 validation persons in 2,729 images, 22,246 training persons (HRNet's JSON; the
paper says 15,855 / 3,330). 1-based source coordinates become 0-based; missing joints are NaN;
``head_size`` = 0.6 × the head-box diagonal (PCKh).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from personkit.data.constants import NUM_JOINTS
from personkit.data.io import (
    DatasetError,
    first_existing,
    load_mat,
    mat_field,
    mat_items,
    mat_scalar,
    read_text,
    require_dir,
    require_file,
)
from personkit.data.records import PersonRecord

MPII_MAT = "mpii_human_pose_v1_u12_1.mat"
_JSON_NAMES = {"train": ("train.json", "mpii_train.json"), "val": ("valid.json", "mpii_val.json")}


#: MPII's ``SC_BIAS``: the head size is this factor times the head box's diagonal.
MPII_SC_BIAS = 0.6


def mpii_head_size(head_box: ArrayLike) -> np.ndarray:
    """MPII head size: 0.6 x the diagonal of the head box ``(x1, y1, x2, y2)`` (``..., 4``)."""
    box = np.asarray(head_box, dtype=np.float64)
    return MPII_SC_BIAS * np.linalg.norm(box[..., 2:4] - box[..., 0:2], axis=-1)


def read_mpii(root: str | Path, split: str, annotation_file: str | Path | None = None,
              val_list: str | Path | None = None,
              head_boxes: str | Path | None = None) -> list[PersonRecord]:
    """Single-person records of MPII split "train" or "val" (see the module docstring)."""
    if split not in _JSON_NAMES:
        raise ValueError(f"MPII: unknown split {split!r}; valid: {sorted(_JSON_NAMES)}")
    root = Path(root)
    images = require_dir(root / "images", "MPII")
    path = Path(annotation_file) if annotation_file else first_existing(
        [root / MPII_MAT, root / "mpii_human_pose_v1_u12_2" / MPII_MAT]
        + [root / d / n for d in ("annot", "annotations") for n in _JSON_NAMES[split]],
        "MPII", f"{MPII_MAT} or a JSON annotation file of split {split!r}")
    if path.suffix == ".json":
        return _read_json(require_file(path, "MPII"), images, head_boxes)
    val = _read_val_list(Path(val_list) if val_list else first_existing(
        [root / "valid_images.txt", root / "annot" / "valid_images.txt"], "MPII",
        "validation list valid_images.txt (image names, or 'image rect' lines)"))
    return _read_release(path, images, split, val)


def _read_val_list(path: Path) -> dict[str, set[int] | None]:
    """Image name -> 1-based annorect indices (None = every single-person rect)."""
    require_file(path, "MPII", "validation list (image names, or 'image rect' lines)")
    val: dict[str, set[int] | None] = {}
    for line_no, line in enumerate(read_text(path, "MPII").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2 or (len(tokens) == 2 and not tokens[1].isdigit()):
            raise DatasetError(f"{path}:{line_no}: expected 'image' or 'image rect_index'")
        if len(tokens) == 1:
            val[tokens[0]] = None
        elif val.get(tokens[0], set()) is not None:
            val.setdefault(tokens[0], set()).add(int(tokens[1]))
    return val


def _read_release(path: Path, images: Path, split: str,
                  val: dict[str, set[int] | None]) -> list[PersonRecord]:
    release = load_mat(path, "MPII").get("RELEASE")
    if release is None:
        raise DatasetError(f"MPII: {path} has no RELEASE struct")
    annolist = mat_items(mat_field(release, "annolist"))
    train_flags = mat_items(mat_field(release, "img_train"))
    single = mat_items(mat_field(release, "single_person"))
    if not len(annolist) == len(train_flags) == len(single):
        raise DatasetError(f"MPII: {path}: annolist, img_train and single_person differ in length")
    records = []
    for anno, is_train, rect_ids in zip(annolist, train_flags, single, strict=True):
        name = str(mat_field(mat_field(anno, "image"), "name") or "")
        if not name or not is_train or (split == "val") != (name in val):
            continue
        rects = mat_items(mat_field(anno, "annorect"))
        wanted = val.get(name) if split == "val" else None
        for r in sorted(int(i) for i in mat_items(rect_ids)):
            if (wanted is None or r in wanted) and 1 <= r <= len(rects):
                record = _rect_record(rects[r - 1], images / name, f"{path}: {name} rect {r}")
                if record is not None:
                    records.append(record)
    return records


def _rect_record(rect: Any, image_path: Path, where: str) -> PersonRecord | None:
    """One annotated person (``annorect``); None when it has no keypoints, centre or scale."""
    points = mat_items(mat_field(mat_field(rect, "annopoints"), "point"))
    objpos = mat_field(rect, "objpos")
    center = (mat_scalar(mat_field(objpos, "x")), mat_scalar(mat_field(objpos, "y")))
    scale = mat_scalar(mat_field(rect, "scale"))
    if not points or None in center or scale is None:
        return None
    _check_person(center, scale, where)
    try:
        joints, occluded = _points(points)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"MPII: {where}: malformed annopoints ({e})") from e
    box = tuple(mat_scalar(mat_field(rect, k)) for k in ("x1", "y1", "x2", "y2"))
    head_box = None if None in box else tuple(v - 1 for v in box)
    return PersonRecord(
        image_path=image_path, joints=joints, joints_annotated=np.isfinite(joints[:, 0]),
        joints_occluded=occluded, head_box=head_box, head_size=_head_size(head_box),
        center=(center[0] - 1, center[1] - 1), scale=scale)


def _points(points: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """0-based joints (NaN = missing) and occlusion flags (``is_visible == 0``)."""
    joints = np.full((NUM_JOINTS, 2), np.nan, dtype=np.float32)
    occluded = np.zeros(NUM_JOINTS, dtype=bool)
    for point in points:
        j = int(mat_scalar(mat_field(point, "id")))
        if not 0 <= j < NUM_JOINTS:
            raise ValueError(f"joint id {j} outside 0..{NUM_JOINTS - 1}")
        x, y = mat_scalar(mat_field(point, "x")), mat_scalar(mat_field(point, "y"))
        if x is not None and y is not None:
            joints[j] = (x - 1, y - 1)
            occluded[j] = mat_scalar(mat_field(point, "is_visible")) == 0
    return joints, occluded


def _check_person(center: tuple[float, float], scale: float, where: str) -> None:
    """The person box is ``scale · 200`` px around ``center``: a scale that is not a positive
    finite number or a centre that is not finite would crop nothing (or divide by zero)."""
    if not (math.isfinite(scale) and scale > 0):
        raise DatasetError(f"MPII: {where}: scale must be a positive number (person height / "
                           f"200 px), got {scale}")
    if not all(math.isfinite(c) for c in center):
        raise DatasetError(f"MPII: {where}: centre (objpos) must be finite, got {center}")
    if min(center) < 0:  # 1-based pixels; HRNet's JSON writes -1 for "no centre"
        raise DatasetError(f"MPII: {where}: centre (objpos) {center} is negative (1-based "
                           f"pixels; -1 marks a missing centre)")


def _head_size(box: tuple[float, ...] | None) -> float | None:
    """PCKh normaliser (:func:`mpii_head_size`)."""
    return None if box is None else float(mpii_head_size(box))


def _read_json(path: Path, images: Path, head_boxes: str | Path | None) -> list[PersonRecord]:
    try:
        entries = json.loads(read_text(path, "MPII"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"MPII: {path}:{e.lineno} is not valid JSON ({e.msg})") from e
    if not isinstance(entries, list):
        raise DatasetError(f"MPII: {path}: expected a JSON list of persons, got "
                           f"{type(entries).__name__}")
    boxes = _head_boxes(Path(head_boxes), len(entries)) if head_boxes else None
    records = []
    for i, e in enumerate(entries):
        try:
            joints = np.asarray(e["joints"], dtype=np.float32).reshape(NUM_JOINTS, 2) - 1
            annotated = np.asarray(e["joints_vis"], dtype=float).reshape(NUM_JOINTS) > 0
            box = e.get("head_box", None if boxes is None else boxes[i])
            head_box = None if box is None else tuple(float(v) - 1 for v in box)
            center = (float(e["center"][0]) - 1, float(e["center"][1]) - 1)
            image, scale = str(e["image"]), float(e["scale"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DatasetError(f"MPII: {path}: malformed entry {i} ({err!r})") from err
        _check_person((center[0] + 1, center[1] + 1), scale,
                      f"{path}: entry {i} ({image})")
        joints[~annotated] = np.nan
        records.append(PersonRecord(
            image_path=images / image, joints=joints, joints_annotated=annotated,
            head_box=head_box, head_size=_head_size(head_box), center=center, scale=scale))
    return records


def _head_boxes(path: Path, n: int) -> np.ndarray:
    """``n × 4`` 1-based head boxes from a ``gt_valid.mat`` (``headboxes_src``: 2×2×N)."""
    src = load_mat(path, "MPII").get("headboxes_src")
    src = None if src is None else np.asarray(src, dtype=float).reshape(2, 2, -1)
    if src is None or src.shape[2] != n:
        raise DatasetError(f"MPII: {path}: expected headboxes_src of shape 2×2×{n}")
    return src.transpose(2, 0, 1).reshape(n, 4)  # [[x1, y1], [x2, y2]] -> x1, y1, x2, y2
