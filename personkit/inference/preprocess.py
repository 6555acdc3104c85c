"""Preprocessing shared by every engine and by int8 calibration: images to ``uint8`` RGB,
boxes clipped to the image, box crops resized to the model's input size, normalisation.

Conventions (the same as the training readers, :mod:`personkit.data.transforms`):

* Images are RGB. ``uint8`` is used as is; ``uint16`` is scaled to 8 bits; floating-point
  images are taken to be in [0, 1] (values outside are clipped). Grayscale (H×W or H×W×1)
  becomes 3 channels and an alpha channel (H×W×4) is dropped; other layouts are a ValueError.
* Boxes are ``x1, y1, x2, y2`` in continuous image coordinates: pixel ``i`` covers ``[i, i+1)``.
  A box is clipped to the image; a box with no area left is a ValueError naming its index.
* A box is resized to the model's input size (``meta.input_size``, bilinear, aspect not kept)
  and normalised with the model's ``mean``/``std``: all preprocessing comes from the
  checkpoint's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def to_rgb_uint8(image: Any) -> np.ndarray:
    """An H×W×3 ``uint8`` RGB array from any supported image (see the module docstring)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape "
                         f"{image.shape}")
    image = image[:, :, :3]
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}: use uint8, uint16 or float in [0, 1]")


def clip_boxes(boxes: Any, width: int, height: int) -> np.ndarray:
    """``N×4`` float64 boxes clipped to a ``width×height`` image.

    Raises:
        ValueError: a malformed box array, or a box without area after clipping (by index).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise ValueError(f"boxes must be N×4 (x1, y1, x2, y2), got shape {boxes.shape}")
    boxes = boxes[:, :4].copy()
    if not np.isfinite(boxes).all():
        raise ValueError(f"box {int(np.argwhere(~np.isfinite(boxes))[0, 0])} is not finite")
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    empty = (boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)
    if empty.any():
        i = int(np.argmax(empty))
        raise ValueError(f"box {i} has no area inside the {width}×{height} image after clipping "
                         f"(x1, y1, x2, y2 = {boxes[i].round(2).tolist()})")
    return boxes


def crop_matrix(box: Sequence[float], output_size: tuple[int, int]) -> np.ndarray:
    """2×3 matrix from image pixel centres to crop pixel centres: the box fills the output.

    ``x_c = (x + 0.5 - x1) * W / box_w - 0.5`` (and the same for y).
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    h, w = output_size
    sx, sy = w / (x2 - x1), h / (y2 - y1)
    return np.array([[sx, 0.0, (0.5 - x1) * sx - 0.5], [0.0, sy, (0.5 - y1) * sy - 0.5]])


def crop_box(image: np.ndarray, box: Sequence[float], output_size: tuple[int, int]) -> np.ndarray:
    """The box resized to ``output_size`` (H, W), bilinear, as in the training readers."""
    h, w = output_size
    return cv2.warpAffine(image, crop_matrix(box, output_size), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def normalise(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``B×H×W×3`` uint8 RGB crops -> normalised ``B×3×H×W`` float32 (``(x/255 - mean)/std``)."""
    x = crops.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean_ = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    std_ = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean_) / std_)
