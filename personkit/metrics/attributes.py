"""Pedestrian attribute metrics on Market-1501 attributes (Lin et al., arXiv:1703.07220).

* ``acc/<name>`` and ``mean``: the official protocol of ``evaluate_market_attribute.m``
  (vana77/Market-1501_Attribute; protocols.md section 2). Every attribute is scored over all
  given images; a colour counts as correct only when the identity has that colour, so an
  image whose ground truth is ``IGNORE_INDEX`` (identity with no colour labelled) is always
  wrong and stays in the denominator. The official image set is ``bounding_box_test`` with
  pid > 0; pass ``pids`` to drop pid <= 0 images.
* ``mA/<name>`` and ``mA``: label-based mean accuracy over the binary attributes,
  (TPR + TNR) / 2 (fast-reid ``attr_evaluation.py``, PETA style). Ignored labels are skipped;
  a class absent from the ground truth gives recall 0, as fast-reid's ``eps`` denominators do.

Labels and predictions are class indices in the order of ``MARKET_ATTRIBUTES``; for binary
attributes class 1 is the positive ("yes", "female", "long hair", ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES

ArrayLike = Any
AttributeNames = Mapping[str, Sequence[str]] | Sequence[str]


def attribute_accuracy(pred: ArrayLike, gt: ArrayLike,
                       names: AttributeNames = MARKET_ATTRIBUTES,
                       pids: ArrayLike | None = None) -> dict[str, float]:
    """Official Market-1501-attribute accuracies plus the binary label-based ``mA``.

    Args:
        pred: N x A predicted class indices, columns in the order of ``names``.
        gt: N x A ground-truth class indices, ``IGNORE_INDEX`` where unknown.
        names: attribute names, or a mapping name -> class names. Plain names are looked up in
            ``MARKET_ATTRIBUTES`` to find which attributes are binary.
        pids: optional N identities; images with pid <= 0 are dropped first.

    Returns:
        ``acc/<name>``, ``mean``, ``mA/<name>`` (binary attributes) and ``mA``, in [0, 1].
    """
    return attribute_scores(attribute_counts(pred, gt, names, pids), names)


def attribute_counts(pred: ArrayLike, gt: ArrayLike, names: AttributeNames = MARKET_ATTRIBUTES,
                     pids: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Sufficient statistics of :func:`attribute_accuracy`; add them up over batches.

    Returns:
        ``images`` (1,), ``correct`` (A,), and for every attribute the binary counts
        ``pos``, ``neg``, ``true_pos``, ``true_neg`` (A,) (zero for non-binary attributes).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != len(names):
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be N x {len(names)}")
    if pids is not None:
        keep = np.asarray(pids).reshape(-1) > 0
        pred, gt = pred[keep], gt[keep]
    binary = np.array([n == 2 for n in num_classes(names)])[None]
    known = gt != IGNORE_INDEX
    pos, neg = binary & (gt == 1), binary & (gt == 0)
    return {
        "images": np.array([len(gt)]),
        "correct": ((pred == gt) & known).sum(0),
        "pos": pos.sum(0),
        "neg": neg.sum(0),
        "true_pos": (pos & (pred == 1)).sum(0),
        "true_neg": (neg & (pred == 0)).sum(0),
    }


def attribute_scores(counts: Mapping[str, np.ndarray],
                     names: AttributeNames = MARKET_ATTRIBUTES) -> dict[str, float]:
    """Scores from (summed) :func:`attribute_counts`."""
    acc = counts["correct"] / max(1, int(counts["images"][0]))
    out = {f"acc/{n}": float(a) for n, a in zip(names, acc, strict=True)}
    out["mean"] = float(acc.mean())
    binary = np.array([k == 2 for k in num_classes(names)])
    tpr = counts["true_pos"] / np.maximum(1, counts["pos"])
    tnr = counts["true_neg"] / np.maximum(1, counts["neg"])
    label_ma = (tpr + tnr) / 2
    out.update({f"mA/{n}": float(m) for n, m, b in zip(names, label_ma, binary, strict=True)
                if b})
    out["mA"] = float(label_ma[binary].mean()) if binary.any() else float("nan")
    return out


def num_classes(names: AttributeNames) -> list[int]:
    """Number of classes per attribute, from a mapping or from ``MARKET_ATTRIBUTES``."""
    if isinstance(names, Mapping):
        return [len(c) for c in names.values()]
    unknown = [n for n in names if n not in MARKET_ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; pass a mapping name -> class names "
                         f"or use names from: {', '.join(MARKET_ATTRIBUTES)}")
    return [len(MARKET_ATTRIBUTES[n]) for n in names]
