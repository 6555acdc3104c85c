"""Accumulating evaluators: ``reset()`` / ``process(...)`` per batch / ``evaluate() -> dict``.

The detectron2 ``DatasetEvaluator`` shape. Each evaluator keeps sufficient statistics
(confusion matrix, PCKh counts, attribute counts) or, for ReID, the embeddings themselves,
and ``evaluate()`` calls the pure functions of this package on them, so the result equals
the pure function applied to the whole set. Inputs may be numpy arrays or torch tensors on
any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from personkit.data.constants import MARKET_ATTRIBUTES, SEG_IGNORE
from personkit.metrics.attributes import AttributeNames, attribute_counts, attribute_scores
from personkit.metrics.matching import (
    STRANGER_ACCEPT,
    calibrate_match_threshold,
    calibrate_track_threshold,
)
from personkit.metrics.pose import LOW_THRESHOLD, MPII_UBODY_JOINTS, pckh_counts, pckh_scores
from personkit.metrics.reid import compute_distance_matrix, evaluate_reid, re_rank_features
from personkit.metrics.segmentation import (
    confusion_matrix,
    merge_confusion,
    segmentation_scores,
)

ArrayLike = Any


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A numpy view or copy of a tensor (any device) or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReidEvaluator:
    """Market-1501 ReID evaluation of accumulated embeddings (see :func:`evaluate_reid`).

    Gallery items with pid -1 (junk) are dropped before the distances, as torchreid's loader
    does; this changes nothing without re-ranking and keeps them out of the k-reciprocal sets.

    Args:
        metric: distance for :func:`compute_distance_matrix`.
        rerank: apply k-reciprocal re-ranking (Zhong et al., CVPR 2017, k1=20, k2=6, 0.3).
        max_rank: CMC length.
    """

    def __init__(self, metric: str = "euclidean", rerank: bool = False, max_rank: int = 50):
        self.metric, self.rerank, self.max_rank = metric, rerank, max_rank
        self.reset()

    def reset(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []

    def process(self, embeddings: ArrayLike, pids: ArrayLike, camids: ArrayLike,
                is_query: ArrayLike | bool) -> None:
        """Add a batch: N x D embeddings, N pids and camids, and a bool (or N bools)."""
        emb = as_numpy(embeddings)
        n = len(emb)
        query = np.broadcast_to(as_numpy(is_query).astype(bool), (n,))
        self._parts.append((emb, as_numpy(pids).reshape(n), as_numpy(camids).reshape(n), query))

    def evaluate(self) -> dict[str, Any]:
        """``mAP``, ``mAP_official``, ``mINP``, ``rank1/5/10``, ``cmc`` and query counts."""
        emb, pids, cams, query, gallery = self._arrays("evaluate")
        if self.rerank:
            dist = re_rank_features(emb[query], emb[gallery], self.metric)
        else:
            dist = compute_distance_matrix(emb[query], emb[gallery], self.metric)
        out = evaluate_reid(dist, pids[query], pids[gallery], cams[query], cams[gallery],
                            max_rank=self.max_rank)
        cmc = out["cmc"]
        out.update({f"rank{k}": float(cmc[k - 1]) for k in (1, 5, 10) if k <= len(cmc)})
        return out

    def match_calibration(self, stranger_accept: float = STRANGER_ACCEPT) -> dict[str, Any]:
        """The calibrated "same person" cosine-distance threshold of the accumulated
        embeddings, with its precision and recall (:func:`calibrate_match_threshold`)."""
        emb, pids, cams, query, gallery = self._arrays("match_calibration")
        dist = compute_distance_matrix(emb[query], emb[gallery], "cosine")
        return calibrate_match_threshold(dist, pids[query], pids[gallery], cams[query],
                                         cams[gallery], stranger_accept)

    def track_calibration(self, stranger_accept: float = STRANGER_ACCEPT) -> dict[str, Any]:
        """The same-person threshold between track means: every identity's views in one
        camera, query and gallery alike, averaged (:func:`calibrate_track_threshold`)."""
        emb, pids, cams, query, gallery = self._arrays("track_calibration")
        return calibrate_track_threshold(emb, pids, cams, stranger_accept)

    def _arrays(self, caller: str) -> tuple[np.ndarray, ...]:
        """Embeddings, pids, cameras, the query mask and the gallery mask (junk dropped)."""
        if not self._parts:
            raise ValueError(f"ReidEvaluator.{caller}() before any process()")
        emb, pids, cams, query = (np.concatenate(a) for a in zip(*self._parts, strict=True))
        return emb, pids, cams, query, ~query & (pids != -1)


class AttributeEvaluator:
    """Market-1501 attribute accuracies (see :func:`attribute_accuracy`).

    Args:
        names: attribute names, or mapping name -> class names, in column order.
    """

    def __init__(self, names: AttributeNames = MARKET_ATTRIBUTES):
        self.names = names
        self.reset()

    def reset(self) -> None:
        self._counts: dict[str, np.ndarray] | None = None

    def process(self, pred: ArrayLike, gt: ArrayLike, pids: ArrayLike | None = None) -> None:
        """Add N x A predicted and ground-truth class indices; with ``pids``, images with
        pid <= 0 are dropped (the official set is the gallery with pid > 0)."""
        pids = None if pids is None else as_numpy(pids)
        counts = attribute_counts(as_numpy(pred), as_numpy(gt), self.names, pids)
        self._counts = counts if self._counts is None else {
            k: v + counts[k] for k, v in self._counts.items()}

    def evaluate(self) -> dict[str, float]:
        if self._counts is None:
            raise ValueError("AttributeEvaluator.evaluate() before any process()")
        return attribute_scores(self._counts, self.names)


class PoseEvaluator:
    """PCKh with official MPII toolkit rules (see :func:`pckh`).

    Args:
        threshold: main PCKh threshold (``Mean@0.1`` is always reported too).
        ubody_joints: joints pooled into ``UBody`` (``LIP_UBODY_JOINTS`` for LIP).
    """

    def __init__(self, threshold: float = 0.5,
                 ubody_joints: Sequence[int] = MPII_UBODY_JOINTS):
        self.threshold, self.ubody_joints = threshold, ubody_joints
        self.reset()

    def reset(self) -> None:
        self._counts: dict[str, np.ndarray] | None = None

    def process(self, pred: ArrayLike, gt: ArrayLike, annotated: ArrayLike,
                head_sizes: ArrayLike) -> None:
        """Add N x 16 x 2 predictions and ground truth, N x 16 annotated flags, N head sizes."""
        counts = pckh_counts(as_numpy(pred), as_numpy(gt), as_numpy(annotated),
                             as_numpy(head_sizes), (self.threshold, LOW_THRESHOLD))
        self._counts = counts if self._counts is None else {
            k: v + counts[k] for k, v in self._counts.items()}

    def evaluate(self) -> dict[str, float]:
        if self._counts is None:
            raise ValueError("PoseEvaluator.evaluate() before any process()")
        return pckh_scores(self._counts, self.ubody_joints)


class SegmentationEvaluator:
    """One confusion matrix over the whole set, SCHP/CE2P scores (never a per-image mean).

    Args:
        num_classes: number of classes (20 for LIP).
        class_names: optional names for flat ``IoU/<name>`` keys.
        merge_lut: optional lookup table class -> merged class (e.g. ``LIP_TO_MERGED5``);
            adds ``mIoU<K>`` and ``pixel_acc<K>`` for the K merged classes.
        ignore_index: ground-truth label to drop.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 merge_lut: ArrayLike | None = None, ignore_index: int = SEG_IGNORE):
        self.num_classes, self.class_names = num_classes, class_names
        self.merge_lut = None if merge_lut is None else as_numpy(merge_lut)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def process(self, pred: ArrayLike, gt: ArrayLike) -> None:
        """Add (N, H, W) or (H, W) integer label maps."""
        self.confusion += confusion_matrix(as_numpy(pred), as_numpy(gt), self.num_classes,
                                           self.ignore_index)

    def evaluate(self) -> dict[str, Any]:
        out = segmentation_scores(self.confusion, self.class_names)
        if self.merge_lut is not None:
            merged = merge_confusion(self.confusion, self.merge_lut)
            scores = segmentation_scores(merged)
            out[f"mIoU{len(merged)}"] = scores["mIoU"]
            out[f"pixel_acc{len(merged)}"] = scores["pixel_acc"]
        return out
