"""Heatmap pose head with a soft-argmax (Sun et al., ECCV 2018; Pfeiffer et al., Fig. 2e).

Half-cell convention. Cell ``j`` of a ``w``-wide heatmap covers input pixels
``[j*s, (j+1)*s)`` for the stride ``s = W/w``; its centre is at normalised coordinate
``(j + 0.5) / w``. The soft-argmax takes the expectation of these cell centres, so a one-hot
heatmap at cell ``j`` decodes to exactly ``(j + 0.5) / w``, and targets are normalised the same
way, ``u = (x + 0.5) / W`` for a 0-based pixel-centre coordinate ``x`` (see
:mod:`personkit.data.records`). The authors' ``linspace(0, 1, w)`` maps the first and last
cell centres to 0 and 1 instead, which is off by up to half a cell at the borders.
"""

from __future__ import annotations

import torch
from torch import nn


def soft_argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over all cells, then the expected normalised (x, y) of the cell centres.

    Args:
        heatmaps: ``B×J×h×w`` logits.

    Returns:
        ``(coords, probs)``: ``B×J×2`` normalised (x, y) in [0, 1], and the ``B×J×h×w``
        probabilities (computed in float32 for stability under autocast).
    """
    b, j, h, w = heatmaps.shape
    probs = torch.softmax(heatmaps.float().reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=torch.float32) + 0.5) / h
    x = (probs.sum(dim=2) * xs).sum(dim=-1)
    y = (probs.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), probs


class PoseHead(nn.Module):
    """A 1×1 conv gives one heatmap per joint; without the conv (split-pose variant) the
    input channels already are the heatmaps."""

    def __init__(self, in_channels: int, num_joints: int = 16, conv: bool = True):
        super().__init__()
        if not conv and in_channels != num_joints:
            raise ValueError(f"without a conv the input must have {num_joints} channels")
        self.conv = nn.Conv2d(in_channels, num_joints, kernel_size=1) if conv else nn.Identity()

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns heatmap logits ``B×J×h×w``, keypoints ``B×J×2`` and their confidence ``B×J``.

        The confidence is the probability mass within one cell of the decoded location.
        """
        heatmaps = self.conv(features)
        coords, probs = soft_argmax_2d(heatmaps)
        return heatmaps, coords, _local_mass(probs, coords)


def _local_mass(probs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Probability within ±1 cell of ``coords`` (a peakedness score in [0, 1])."""
    b, j, h, w = probs.shape
    cx = (coords[..., 0] * w - 0.5).round().clamp(0, w - 1)
    cy = (coords[..., 1] * h - 0.5).round().clamp(0, h - 1)
    xs = torch.arange(w, device=probs.device).view(1, 1, 1, w)
    ys = torch.arange(h, device=probs.device).view(1, 1, h, 1)
    near = ((xs - cx[..., None, None]).abs() <= 1) & ((ys - cy[..., None, None]).abs() <= 1)
    return (probs * near).sum(dim=(2, 3))
