"""Paired geometric augmentation of an image, its part mask and its joints.

One 2×3 affine matrix maps original pixels to output pixels (0-based pixel centres, see
:mod:`personkit.data.records`). It is composed as: crop box -> output size (anisotropic for a
whole-image resize), then rotation and scale about the output centre, then translation by a
fraction of the output size, then an optional horizontal flip ``x -> W - 1 - x``. The same
matrix warps the image (bilinear, border 0), the mask (nearest, border ``mask_border``) and the
joints. A flip also swaps left/right joints (``MPII_FLIP_PAIRS``) and part classes
(``LIP_FLIP_PAIRS``). Joints that leave the output become invalid.

Presets follow Pfeiffer et al., GCPR 2019 and the authors' configs (docs/datasets.md): MPII
crops a square box of side ``scale·200`` around ``center`` moved down by 0.075 of the side
(train: rotation ±30°, scale 0.75-1.25, translation ±20 %, flip); LIP resizes the whole image
without keeping the aspect (train: ±15°, 0.75-1.25, ±2 %, flip, uniform ranges); Market/Duke
resize (train: flip only). All randomness comes from a ``numpy.random.Generator`` argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import cv2
import numpy as np
import torch

from personkit.data.constants import LIP_FLIP_PAIRS, LIP_TO_MERGED5, MPII_FLIP_PAIRS

Pairs = Sequence[tuple[int, int]]
T = TypeVar("T", np.ndarray, torch.Tensor)


def affine_matrix(center: tuple[float, float], box_size: tuple[float, float],
                  output_size: tuple[int, int], rotation: float = 0.0, scale: float = 1.0,
                  shift: tuple[float, float] = (0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2×3 matrix mapping original pixel centres to output pixel centres.

    Args:
        center: box centre (x, y) in original pixels (0-based centres).
        box_size: box (width, height) in original pixels; it fills the output.
        output_size: (H, W) of the output.
        rotation: degrees, counter-clockwise as displayed, about the output centre.
        scale: zoom about the output centre (> 1 enlarges the content).
        shift: translation (x, y) as fractions of the output width/height.
        flip: mirror the output horizontally (``x -> W - 1 - x``) as the last step.
    """
    h, w = output_size
    a = math.radians(rotation)
    rot = scale * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    m = np.eye(3)
    m[:2, :2] = rot @ np.diag([w / box_size[0], h / box_size[1]])
    # Output edge coordinates: box centre -> output centre + shift.
    m[:2, 2] = np.array([w / 2 + shift[0] * w, h / 2 + shift[1] * h]) - m[:2, :2] @ center
    if flip:
        m = np.array([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    m[:2, 2] -= 0.5  # edge -> pixel-centre coordinates on the output side
    return m[:2]


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to N×2 points (NaN stays NaN)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def swap_pairs(values: np.ndarray, pairs: Pairs) -> np.ndarray:
    """A copy of ``values`` with rows ``a`` and ``b`` exchanged for every pair (flip swap)."""
    out = np.array(values, copy=True)
    for a, b in pairs:
        out[[a, b]] = out[[b, a]]
    return out


def class_flip_lut(pairs: Pairs = LIP_FLIP_PAIRS) -> np.ndarray:
    """uint8 lookup table exchanging left/right part classes (identity elsewhere)."""
    lut = np.arange(256, dtype=np.uint8)
    for a, b in pairs:
        lut[a], lut[b] = b, a
    return lut


def merge_parts(labels: T, lut: np.ndarray = LIP_TO_MERGED5) -> T:
    """Map LIP class ids (labels or predictions) through ``lut``, e.g. 20 -> 5 merged classes.

    Works on numpy arrays and torch tensors of non-negative ids below 256 and keeps the dtype
    (and device); 255 (ignore) stays 255 with the default table.
    """
    if isinstance(labels, torch.Tensor):
        table = torch.as_tensor(np.asarray(lut, dtype=np.int64), device=labels.device)
        return table[labels.long()].to(labels.dtype)
    return np.asarray(lut)[labels].astype(labels.dtype, copy=False)


class Transformed(NamedTuple):
    """Output of :class:`AffineAugment`; fields are None where no input was given."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None  # (H, W) uint8
    joints: np.ndarray | None  # (J, 2) float32, output pixels
    joints_valid: np.ndarray | None  # (J,) bool: annotated, finite and inside the output
    affine: np.ndarray  # (2, 3) float32, original -> output pixels
    flipped: bool


@dataclass(frozen=True)
class AffineAugment:
    """Crop/resize plus random rotation, scale, translation and flip, applied consistently.

    Args:
        output_size: (H, W) of the network input.
        crop: ``"image"`` resizes the whole image (aspect not kept); ``"box"`` crops a square
            of side ``scale · 200 · box_scale`` around the person ``center`` (MPII).
        rotation: maximum |angle| in degrees, sampled uniformly.
        scale: (min, max) zoom, sampled uniformly.
        translation: maximum |shift| per axis as a fraction of the output size.
        flip_prob: probability of a horizontal flip (with left/right swaps).
        box_scale: box enlargement for ``crop="box"`` (1.0 as the authors; HRNet uses 1.25).
        center_shift: ``crop="box"`` moves the centre down by this fraction of ``scale·200``.
        mask_border: label of mask pixels that come from outside the original image: 0
            (background, default: there is no person there) or 255 to ignore them.
        joint_flip_pairs, part_flip_pairs: left/right pairs swapped by a flip.
    """

    output_size: tuple[int, int]
    crop: str = "image"
    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translation: float = 0.0
    flip_prob: float = 0.0
    box_scale: float = 1.0
    center_shift: float = 0.075
    mask_border: int = 0
    joint_flip_pairs: Pairs = MPII_FLIP_PAIRS
    part_flip_pairs: Pairs = LIP_FLIP_PAIRS

    def __post_init__(self) -> None:
        if self.crop not in ("image", "box"):
            raise ValueError(f"crop must be 'image' or 'box', got {self.crop!r}")

    def sample(self, image_size: tuple[int, int], rng: np.random.Generator,
               center: tuple[float, float] | None = None,
               scale: float | None = None) -> tuple[np.ndarray, bool]:
        """Draw the 2×3 matrix and the flip flag for an image of ``(H, W)`` = ``image_size``."""
        u = rng.random(5)  # always five draws, so streams do not depend on the settings
        rot = self.rotation * (2 * u[0] - 1)
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * u[1]
        shift = (self.translation * (2 * u[2] - 1), self.translation * (2 * u[3] - 1))
        flip = bool(u[4] < self.flip_prob)
        if self.crop == "image":
            h, w = image_size
            box_center, box = ((w - 1) / 2, (h - 1) / 2), (w, h)
        else:
            if center is None or scale is None:
                raise ValueError("crop='box' needs the person center and scale (MPII records)")
            side = scale * 200
            box_center = (center[0], center[1] + self.center_shift * side)
            box = (side * self.box_scale, side * self.box_scale)
        matrix = affine_matrix(box_center, box, self.output_size, rot, zoom, shift, flip)
        return matrix, flip

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 mask: np.ndarray | None = None, joints: np.ndarray | None = None,
                 joints_valid: np.ndarray | None = None,
                 center: tuple[float, float] | None = None,
                 scale: float | None = None) -> Transformed:
        """Warp ``image`` (H×W×3) and, if given, ``mask`` (H×W) and ``joints`` (J×2 pixels)."""
        matrix, flip = self.sample(image.shape[:2], rng, center, scale)
        return self.apply(matrix, flip, image, mask, joints, joints_valid)

    def apply(self, matrix: np.ndarray, flip: bool, image: np.ndarray,
              mask: np.ndarray | None = None, joints: np.ndarray | None = None,
              joints_valid: np.ndarray | None = None) -> Transformed:
        """Warp with a given matrix (``flip`` tells whether it mirrors, for the swaps)."""
        h, w = self.output_size
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if mask is not None:
            mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=self.mask_border)
            if flip:
                mask = class_flip_lut(self.part_flip_pairs)[mask]
        valid = None
        if joints is not None:
            joints = transform_points(matrix, joints).astype(np.float32)
            valid = np.isfinite(joints).all(1) if joints_valid is None else joints_valid.copy()
            valid &= _inside(joints, w, h)
            if flip:
                joints = swap_pairs(joints, self.joint_flip_pairs)
                valid = swap_pairs(valid, self.joint_flip_pairs)
        return Transformed(out, mask, joints, valid, matrix.astype(np.float32), flip)


def _inside(joints: np.ndarray, w: int, h: int) -> np.ndarray:
    """Joints within the output image, edges included (normalised u, v in [0, 1])."""
    with np.errstate(invalid="ignore"):
        x, y = joints[:, 0], joints[:, 1]
        return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def mpii_transform(train: bool, output_size: tuple[int, int] = (256, 256),
                   box_scale: float = 1.0) -> AffineAugment:
    """MPII: square person box -> output; train adds ±30°, 0.75-1.25, ±20 %, flip."""
    if not train:
        return AffineAugment(output_size, crop="box", box_scale=box_scale)
    return AffineAugment(output_size, crop="box", rotation=30.0, scale=(0.75, 1.25),
                         translation=0.2, flip_prob=0.5, box_scale=box_scale)


def lip_transform(train: bool, output_size: tuple[int, int] = (256, 256),
                  mask_border: int = 0) -> AffineAugment:
    """LIP: whole image -> output; train adds ±15°, 0.75-1.25, ±2 % (uniform), flip."""
    if not train:
        return AffineAugment(output_size, mask_border=mask_border)
    return AffineAugment(output_size, rotation=15.0, scale=(0.75, 1.25), translation=0.02,
                         flip_prob=0.5, mask_border=mask_border)


def reid_transform(train: bool, output_size: tuple[int, int] = (256, 128)) -> AffineAugment:
    """Market-1501/Duke: whole crop -> output; train adds a horizontal flip only."""
    return AffineAugment(output_size, flip_prob=0.5 if train else 0.0)
