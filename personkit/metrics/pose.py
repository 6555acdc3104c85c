"""PCKh for MPII Human Pose and LIP (protocols.md sections 3 and 4).

Follows the official MPII toolkit (``genTablePCK.m``, ``computePCK.m``, ``getDistPCKh.m``,
``util_get_head_size.m``; Andriluka et al., CVPR 2014):

* a joint is correct when ``||pred - gt|| / head_size <= threshold`` (inclusive);
* only annotated joints count (occluded but annotated joints do);
* per-joint score = correct / annotated; ``Head`` is the mean of upper neck and head top,
  the other groups the mean of their left and right joints;
* ``Mean`` is pooled (correct / annotated summed) over the 14 joints other than pelvis and
  thorax; ``UBody`` is pooled over the upper-body joints (official MPII: 10-15, wrists to
  shoulders; LIP as in gccpm ``calc_pckh.py``: 8-15, neck and head included).

Head sizes: MPII uses 0.6 x the head-box diagonal (SC_BIAS); LIP has no head box and uses
the head-top to upper-neck distance without a factor (gccpm, the de facto LIP protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personkit.data.constants import MPII_JOINTS, NUM_JOINTS, PCKH_GROUPS, PCKH_MEAN_JOINTS
from personkit.data.datasets.lip import lip_head_size as lip_head_size  # re-exported
from personkit.data.datasets.mpii import mpii_head_size as mpii_head_size  # re-exported

ArrayLike = Any
#: MPII toolkit ``genTablePCK`` UBody: wrists, elbows, shoulders.
MPII_UBODY_JOINTS: tuple[int, ...] = tuple(range(10, 16))
#: LIP (gccpm ``calc_pckh``) U.Body: upper neck, head top, wrists, elbows, shoulders.
LIP_UBODY_JOINTS: tuple[int, ...] = tuple(range(8, 16))
#: The threshold of the secondary ``Mean@0.1`` score.
LOW_THRESHOLD = 0.1


def pckh(pred: ArrayLike, gt: ArrayLike, annotated: ArrayLike, head_sizes: ArrayLike,
         threshold: float = 0.5,
         ubody_joints: Sequence[int] = MPII_UBODY_JOINTS) -> dict[str, float]:
    """PCKh of the official MPII toolkit (``genTablePCK``), see the module docstring.

    Args:
        pred, gt: N x 16 x 2 joints in the same pixel space (MPII joint order).
        annotated: N x 16 bool; joints with non-finite ground truth are treated as missing.
        head_sizes: N normalisers; persons with a non-finite or non-positive one are skipped.
        threshold: PCKh threshold for the main scores.
        ubody_joints: joints pooled into ``UBody``.

    Returns:
        ``Head``, ``Shoulder``, ``Elbow``, ``Wrist``, ``Hip``, ``Knee``, ``Ankle``, ``Mean``,
        ``UBody``, ``Mean@0.1``, ``joint/<name>`` (fractions; NaN for a joint never annotated)
        ``num_skipped`` (persons without a usable head size, left out of every denominator)
        and ``num_zero_head_size`` (those of them whose head size is 0: a zero-area head box
        or coinciding neck and head top).
    """
    counts = pckh_counts(pred, gt, annotated, head_sizes, (threshold, LOW_THRESHOLD))
    return pckh_scores(counts, ubody_joints)


def pckh_counts(pred: ArrayLike, gt: ArrayLike, annotated: ArrayLike, head_sizes: ArrayLike,
                thresholds: Sequence[float] = (0.5, LOW_THRESHOLD)) -> dict[str, np.ndarray]:
    """Sufficient statistics of :func:`pckh`; add them up over batches.

    Returns:
        ``correct`` (T x 16, one row per threshold; the first is the main one),
        ``annotated`` (16,), ``skipped`` (1,) and ``zero_head`` (1,), the skipped persons
        whose head size is exactly 0.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    ann = np.asarray(annotated, dtype=bool)
    head = np.asarray(head_sizes, np.float64).reshape(-1)
    if pred.shape != gt.shape or gt.shape[1:] != (NUM_JOINTS, 2) or ann.shape != gt.shape[:2] \
            or head.shape != gt.shape[:1]:
        raise ValueError(f"need N x {NUM_JOINTS} x 2 pred/gt, N x {NUM_JOINTS} annotated and N "
                         f"head sizes; got {pred.shape}, {gt.shape}, {ann.shape}, {head.shape}")
    usable = np.isfinite(head) & (head > 0)
    ann = ann & usable[:, None] & np.isfinite(gt).all(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.linalg.norm(pred - gt, axis=-1) / head[:, None]
    correct = [((dist <= t) & ann).sum(0) for t in thresholds]  # NaN predictions are misses
    return {"correct": np.stack(correct), "annotated": ann.sum(0),
            "skipped": np.array([np.count_nonzero(~usable)]),
            "zero_head": np.array([np.count_nonzero(head == 0)])}


def pckh_scores(counts: Mapping[str, np.ndarray],
                ubody_joints: Sequence[int] = MPII_UBODY_JOINTS) -> dict[str, float]:
    """Scores from (summed) :func:`pckh_counts` with thresholds ``(t, 0.1)``."""
    correct, total = counts["correct"].astype(np.float64), counts["annotated"]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = correct[0] / total
    out = {g: float(per_joint[list(j)].mean()) for g, j in PCKH_GROUPS.items()}
    out["Mean"] = _pooled(correct[0], total, PCKH_MEAN_JOINTS)
    out["UBody"] = _pooled(correct[0], total, ubody_joints)
    out["Mean@0.1"] = _pooled(correct[-1], total, PCKH_MEAN_JOINTS)
    out.update({f"joint/{n}": float(s) for n, s in zip(MPII_JOINTS, per_joint, strict=True)})
    out["num_skipped"] = int(counts["skipped"][0])
    out["num_zero_head_size"] = int(counts.get("zero_head", [0])[0])
    return out


def _pooled(correct: np.ndarray, total: np.ndarray, joints: Sequence[int]) -> float:
    n = total[list(joints)].sum()
    return float(correct[list(joints)].sum() / n) if n else float("nan")
