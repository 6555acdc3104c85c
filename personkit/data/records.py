"""Typed records that dataset readers yield, and the per-sample dict that datasets return.

Coordinate convention (used everywhere in personkit):

* Image coordinates are 0-based pixel centres: pixel ``i`` covers ``[i - 0.5, i + 0.5]``.
  Readers convert 1-based sources (MPII ``.mat``/JSON) on load.
* Normalised coordinates ``u = (x + 0.5) / W`` and ``v = (y + 0.5) / H`` run from 0 at the
  left/top image edge to 1 at the right/bottom edge. The pose head predicts and the pose loss
  compares in this space. A horizontal flip is ``u -> 1 - u`` (``x -> W - 1 - x``).

Sample dict (one item of a :class:`torch.utils.data.Dataset`; only the keys the dataset has):

=================  =====================  ==============================================
key                type / shape           meaning
=================  =====================  ==============================================
``image``          float32 ``3×H×W``      normalised with the model's mean/std
``index``          int64                  index of the record in its dataset
``pid``            int64                  identity; contiguous 0..N-1 for training sets
``camid``          int64                  camera id
``attributes``     int64 ``A``            class per attribute, ``IGNORE_INDEX`` if unknown
``joints``         float32 ``J×2``        normalised (u, v) in the input image
``joints_valid``   bool ``J``             annotated and inside the input image
``parts``          int64 ``H×W``          part class per pixel, ``SEG_IGNORE`` for unknown
``affine``         float32 ``2×3``        maps original-image pixels to input pixels
=================  =====================  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Which sample keys each task needs as labels (its keys are config.ALL_HEADS: a test checks).
TASK_LABELS: dict[str, tuple[str, ...]] = {
    "reid": ("pid",),
    "id": ("pid",),
    "attributes": ("attributes",),
    "pose": ("joints", "joints_valid"),
    "segmentation": ("parts",),
}


@dataclass(frozen=True, eq=False)
class PersonRecord:
    """One annotated person as a reader yields it, before any image is decoded.

    Fields a dataset does not provide stay ``None``. Joint coordinates are 0-based image
    pixels of the *original* image; ``head_size`` is the PCKh normaliser in those pixels.
    """

    image_path: Path
    pid: int | None = None
    camid: int | None = None
    attributes: np.ndarray | None = None  # (A,) int64, IGNORE_INDEX where unknown
    joints: np.ndarray | None = None  # (16, 2) float32, original-image pixels
    joints_annotated: np.ndarray | None = None  # (16,) bool
    joints_occluded: np.ndarray | None = None  # (16,) bool, where the source has the flag
    head_size: float | None = None  # PCKh normaliser in original-image pixels
    head_box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 (MPII)
    center: tuple[float, float] | None = None  # person centre (MPII objpos), 0-based
    scale: float | None = None  # person height / 200 px (MPII)
    mask_path: Path | None = None  # part-label PNG holding LIP class ids
