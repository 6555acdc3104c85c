"""Evaluation protocols: Market-1501 ReID and attributes, MPII/LIP PCKh, LIP parsing mIoU.

Pure functions plus accumulating evaluators (``reset`` / ``process`` / ``evaluate``). Every
score is a fraction in [0, 1]. Each module's docstring states its protocol and the official
code it follows; ``tests/metrics/`` checks them on hand-computed vectors.
"""

from personkit.metrics.attributes import (
    attribute_accuracy,
    attribute_counts,
    attribute_scores,
)
from personkit.metrics.evaluators import (
    AttributeEvaluator,
    PoseEvaluator,
    ReidEvaluator,
    SegmentationEvaluator,
    as_numpy,
)
from personkit.metrics.pose import (
    LIP_UBODY_JOINTS,
    MPII_UBODY_JOINTS,
    lip_head_size,
    mpii_head_size,
    pckh,
    pckh_counts,
    pckh_scores,
)
from personkit.metrics.reid import (
    METRICS,
    compute_distance_matrix,
    evaluate_reid,
    re_rank,
    re_rank_features,
)
from personkit.metrics.segmentation import confusion_matrix, merge_confusion, segmentation_scores

__all__ = [
    "LIP_UBODY_JOINTS",
    "METRICS",
    "MPII_UBODY_JOINTS",
    "AttributeEvaluator",
    "PoseEvaluator",
    "ReidEvaluator",
    "SegmentationEvaluator",
    "as_numpy",
    "attribute_accuracy",
    "attribute_counts",
    "attribute_scores",
    "compute_distance_matrix",
    "confusion_matrix",
    "evaluate_reid",
    "lip_head_size",
    "merge_confusion",
    "mpii_head_size",
    "pckh",
    "pckh_counts",
    "pckh_scores",
    "re_rank",
    "re_rank_features",
    "segmentation_scores",
]
