"""Coordinate regression loss for soft-argmax pose (Sun et al., ECCV 2018)."""

from __future__ import annotations

import torch

POSE_REDUCTIONS = ("mean", "sum")


def pose_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              kind: str = "l2", reduction: str = "mean") -> torch.Tensor:
    """Per-joint distance in normalised coordinates over the annotated joints only.

    Args:
        pred, target: B×J×2 normalised (x, y).
        valid: B×J bool, annotated and inside the input.
        kind: ``l2`` for the Euclidean distance (the paper), ``l1`` for |dx| + |dy|.
        reduction: ``mean`` averages over the annotated joints (personkit's default);
            ``sum`` sums over each sample's joints and averages over the samples with at least
            one annotated joint, as the authors' code does (``losses/regression.py``). With
            16 joints, about 14 of them annotated, ``sum`` weighs pose about 14× more beside
            the other tasks' losses.
    """
    if kind not in ("l2", "l1"):
        raise ValueError(f"unknown pose loss {kind!r}; valid: l2, l1")
    if reduction not in POSE_REDUCTIONS:
        raise ValueError(f"unknown pose loss reduction {reduction!r}; valid: mean, sum")
    diff = pred.float() - target.float()
    if kind == "l2":
        per_joint = torch.sqrt((diff * diff).sum(dim=-1) + 1e-12)
    else:
        per_joint = diff.abs().sum(dim=-1)
    mask = valid.to(per_joint.dtype)
    count = mask.sum() if reduction == "mean" else (mask.sum(dim=-1) > 0).sum()
    if count == 0:
        return pred.sum() * 0.0
    return (per_joint * mask).sum() / count


def heatmap_loss(heatmaps: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                 sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy between each joint's heatmap softmax and a Gaussian around its target.

    An optional auxiliary term (not in Pfeiffer et al.; in the spirit of the heatmap
    regularisers of integral/DSNT regression) that speeds up learning from scratch: the
    soft-argmax alone gives weak gradients while the distribution is still diffuse.

    Args:
        heatmaps: B×J×h×w logits; target: B×J×2 normalised (x, y); valid: B×J bool.
        sigma: Gaussian width in heatmap cells; cell ``j`` has its centre at ``(j + 0.5) / w``.
    """
    b, j, h, w = heatmaps.shape
    cx = target[..., 0].float() * w - 0.5
    cy = target[..., 1].float() * h - 0.5
    xs = torch.arange(w, device=heatmaps.device, dtype=torch.float32)
    ys = torch.arange(h, device=heatmaps.device, dtype=torch.float32)
    gx = torch.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma**2))
    dist = gy[..., :, None] * gx[..., None, :]
    dist = dist / dist.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    log_p = torch.log_softmax(heatmaps.float().reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    ce = -(dist * log_p).sum(dim=(-2, -1))
    mask = valid.to(ce.dtype)
    if mask.sum() == 0:
        return heatmaps.sum() * 0.0
    return (ce * mask).sum() / mask.sum()
