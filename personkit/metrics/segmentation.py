"""Human parsing metrics: confusion matrix, pixel accuracy, mean accuracy, IoU and mIoU.

Formulas of SCHP / CE2P ``utils/miou.py`` (protocols.md section 4): one confusion matrix M
(rows ground truth, columns prediction) accumulated over the whole set, ignored pixels
dropped; with tp = diag(M), pos = row sums, res = column sums:
pixel acc = sum(tp) / sum(pos), mean acc = mean_c tp_c / max(1, pos_c),
IoU_c = tp_c / max(1, pos_c + res_c - tp_c), mIoU = mean over all classes including
background (a class that never occurs scores 0 and still counts). Never a per-image mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from personkit.data.constants import SEG_IGNORE

ArrayLike = Any


def confusion_matrix(pred: ArrayLike, gt: ArrayLike, num_classes: int,
                     ignore_index: int = SEG_IGNORE) -> np.ndarray:
    """C x C int64 confusion matrix (rows GT, columns prediction) via ``np.bincount``.

    Pixels whose ground truth is ``ignore_index`` are dropped.

    Raises:
        ValueError: on shape mismatch or labels outside ``[0, num_classes)``.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ")
    keep = gt != ignore_index
    p, g = pred[keep].astype(np.int64), gt[keep].astype(np.int64)
    for name, x in (("pred", p), ("gt", g)):
        if x.size and (x.min() < 0 or x.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes}) or be ignored, got "
                             f"[{x.min()}, {x.max()}]")
    flat = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def segmentation_scores(confusion: ArrayLike,
                        class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """``pixel_acc``, ``mean_acc``, ``mIoU`` and per-class ``IoU`` (array) from a confusion
    matrix, SCHP/CE2P formulas; with ``class_names`` also flat ``IoU/<name>`` floats."""
    m = np.asarray(confusion, dtype=np.float64)
    tp, pos, res = np.diag(m), m.sum(1), m.sum(0)
    iou = tp / np.maximum(1.0, pos + res - tp)
    out: dict[str, Any] = {
        "pixel_acc": float(tp.sum() / max(1.0, pos.sum())),
        "mean_acc": float((tp / np.maximum(1.0, pos)).mean()),
        "mIoU": float(iou.mean()),
        "IoU": iou,
    }
    if class_names is not None:
        out.update({f"IoU/{n}": float(v) for n, v in zip(class_names, iou, strict=True)})
    return out


def merge_confusion(confusion: ArrayLike, merge_lut: ArrayLike) -> np.ndarray:
    """Confusion matrix of merged classes: ``merge_lut[c]`` is the merged id of class c.

    Equal to the confusion of the relabelled label maps, since merging acts pixel by pixel.
    Every class must map to a merged class (none to the ignore label).
    """
    m = np.asarray(confusion)
    lut = np.asarray(merge_lut)[: len(m)].astype(np.int64)
    if len(lut) < len(m) or lut.min() < 0 or lut.max() >= len(m):
        raise ValueError(f"merge_lut must map each of the {len(m)} classes to a class id below "
                         f"{len(m)}, got {lut.tolist()}")
    k = int(lut.max()) + 1
    out = np.zeros((k, k), dtype=m.dtype)
    np.add.at(out, (lut[:, None], lut[None, :]), m)
    return out
