"""Coordinate regression loss for soft-argmax pose (Sun et al., ECCV 2018)."""

from __future__ import annotations

import torch


def pose_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
              kind: str = "l2") -> torch.Tensor:
    """Per-joint distance in normalised coordinates, averaged over annotated joints only.

    Args:
        pred, target: B×J×2 normalised (x, y).
        valid: B×J bool, annotated and inside the input.
        kind: ``l2`` for the Euclidean distance (the paper), ``l1`` for |dx| + |dy|.
    """
    if kind not in ("l2", "l1"):
        raise ValueError(f"unknown pose loss {kind!r}; valid: l2, l1")
    diff = pred.float() - target.float()
    if kind == "l2":
        per_joint = torch.sqrt((diff * diff).sum(dim=-1) + 1e-12)
    else:
        per_joint = diff.abs().sum(dim=-1)
    mask = valid.to(per_joint.dtype)
    count = mask.sum()
    if count == 0:
        return pred.sum() * 0.0
    return (per_joint * mask).sum() / count
