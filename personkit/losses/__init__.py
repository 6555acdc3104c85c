"""Task losses and their weighted combination."""

from personkit.losses.classification import attribute_loss, id_loss
from personkit.losses.multitask import MultiTaskLoss
from personkit.losses.pose import pose_loss
from personkit.losses.segmentation import BootstrappedCrossEntropy, bootstrapped_cross_entropy
from personkit.losses.triplet import batch_hard_triplet_loss, pairwise_euclidean

__all__ = [
    "BootstrappedCrossEntropy", "MultiTaskLoss", "attribute_loss", "batch_hard_triplet_loss",
    "bootstrapped_cross_entropy", "id_loss", "pairwise_euclidean", "pose_loss",
]
