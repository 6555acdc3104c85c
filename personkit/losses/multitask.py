"""Per-task losses for a batch and their weighted sum (Pfeiffer et al., GCPR 2019, Sec. 4.2).

A batch only computes the losses its dataset has labels for. The total is
``sum_t w_t * L_t`` with per-task weights (default 1, as in the paper), or, with
``uncertainty=True``, Kendall et al.'s (CVPR 2018) learned weighting
``sum_t w_t * (exp(-s_t) * L_t + s_t)`` where ``s_t = log sigma_t^2`` is a learned scalar
per task (the simplified form used for both regression and classification terms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from personkit.losses.classification import attribute_loss, id_loss
from personkit.losses.pose import POSE_REDUCTIONS, heatmap_loss, pose_loss
from personkit.losses.segmentation import BootstrappedCrossEntropy
from personkit.losses.triplet import batch_hard_triplet_loss
from personkit.models.multitask import HEADS, PersonOutputs


class MultiTaskLoss(nn.Module):
    """Args:
    attribute_names: the attribute order of the ``attributes`` targets.
    weights: task -> weight; missing tasks weigh 1.
    uncertainty: learn Kendall et al.'s per-task log-variances (they are parameters of this
        module, so give them to the optimizer).
    triplet_margin: ``None`` = soft margin.
    pose_kind: ``l2`` (Euclidean, the paper) or ``l1``.
    pose_reduction: ``mean`` over annotated joints or ``sum`` over joints (the authors' code;
        see :func:`~personkit.losses.pose.pose_loss`).
    attribute_weights: per attribute, a weight per class of its cross-entropy
        (:func:`~personkit.losses.classification.attribute_class_weights`); None: unweighted.
    seg_top_k, seg_warmup_steps: bootstrapped CE settings.
    pose_heatmap, pose_heatmap_sigma: weight and width (cells) of the optional auxiliary
        heatmap cross-entropy (0 = the paper's coordinate loss only).
    """

    def __init__(self, attribute_names: Sequence[str] = (), *,
                 weights: Mapping[str, float] | None = None,
                 uncertainty: bool = False, triplet_margin: float | None = None,
                 pose_kind: str = "l2", pose_reduction: str = "mean", seg_top_k: float = 0.25,
                 seg_warmup_steps: int = 5000, pose_heatmap: float = 0.0,
                 pose_heatmap_sigma: float = 1.0,
                 attribute_weights: Mapping[str, Sequence[float]] | None = None):
        super().__init__()
        unknown = set(weights or {}) - set(HEADS)
        if unknown:
            raise ValueError(f"loss weights for unknown tasks {sorted(unknown)}; valid: {HEADS}")
        self.attribute_names = tuple(attribute_names)
        unknown = set(attribute_weights or {}) - set(self.attribute_names)
        if unknown:
            raise ValueError(f"class weights for unknown attributes {sorted(unknown)}; the "
                             f"model's: {', '.join(self.attribute_names)}")
        self.attribute_weights = None if attribute_weights is None else {
            k: torch.tensor(v, dtype=torch.float32) for k, v in attribute_weights.items()}
        self.weights = {t: float((weights or {}).get(t, 1.0)) for t in HEADS}
        self.log_vars = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(())) for t in HEADS} if uncertainty else {}
        )
        self.triplet_margin = triplet_margin
        if pose_reduction not in POSE_REDUCTIONS:
            raise ValueError(f"unknown pose loss reduction {pose_reduction!r}; valid: "
                             f"{', '.join(POSE_REDUCTIONS)}")
        self.pose_kind, self.pose_reduction = pose_kind, pose_reduction
        self.pose_heatmap, self.pose_heatmap_sigma = pose_heatmap, pose_heatmap_sigma
        self.seg_loss = BootstrappedCrossEntropy(seg_top_k, seg_warmup_steps)

    def task_loss(self, task: str, out: PersonOutputs, batch: Mapping[str, torch.Tensor],
                  step: int) -> torch.Tensor:
        """The unweighted loss of one task."""
        if task == "reid":
            return batch_hard_triplet_loss(out.embedding, batch["pid"], self.triplet_margin)
        if task == "id":
            return id_loss(out.id_logits, batch["pid"])
        if task == "attributes":
            return attribute_loss(out.attributes, batch["attributes"], self.attribute_names,
                                  class_weights=self.attribute_weights)
        if task == "pose":
            loss = pose_loss(out.keypoints, batch["joints"], batch["joints_valid"], self.pose_kind,
                             self.pose_reduction)
            if self.pose_heatmap:
                loss = loss + self.pose_heatmap * heatmap_loss(
                    out.heatmaps, batch["joints"], batch["joints_valid"], self.pose_heatmap_sigma)
            return loss
        if task == "segmentation":
            return self.seg_loss(out.parts, batch["parts"], step)
        raise ValueError(f"unknown task {task!r}; valid: {HEADS}")

    def forward(self, out: PersonOutputs, batch: Mapping[str, torch.Tensor],
                tasks: Sequence[str], step: int = 0) -> dict[str, torch.Tensor]:
        """``loss_<task>`` for each task (unweighted, for logging) and the weighted ``loss``."""
        losses: dict[str, torch.Tensor] = {}
        total = None
        for task in tasks:
            value = self.task_loss(task, out, batch, step)
            losses[f"loss_{task}"] = value
            term = self.weights[task] * self._weigh(task, value)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("a batch needs at least one task")
        losses["loss"] = total
        return losses

    def _weigh(self, task: str, value: torch.Tensor) -> torch.Tensor:
        if task not in self.log_vars:
            return value
        s = self.log_vars[task]
        return torch.exp(-s) * value + s
