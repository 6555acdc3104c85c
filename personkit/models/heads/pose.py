"""Heatmap pose head with a soft-argmax (Sun et al., ECCV 2018; Pfeiffer et al., Fig. 2e).

Half-cell convention. Cell ``j`` of a ``w``-wide heatmap covers input pixels
``[j*s, (j+1)*s)`` for the stride ``s = W/w``; its centre is at normalised coordinate
``(j + 0.5) / w``. The soft-argmax takes the expectation of these cell centres, so a one-hot
heatmap at cell ``j`` decodes to exactly ``(j + 0.5) / w``, and targets are normalised the same
way, ``u = (x + 0.5) / W`` for a 0-based pixel-centre coordinate ``x`` (see
:mod:`personkit.data.records`). The authors' ``linspace(0, 1, w)`` maps the first and last
cell centres to 0 and 1 instead, which is off by up to half a cell at the borders.

Local decoding (``window=r``, not in the paper): the soft-argmax over the whole map puts a
two-peaked heatmap (a left/right confusion, say) halfway between its peaks, on neither joint.
With a window the softmax runs only over the cells within ``r`` of the arg-max cell, so the
decoded point stays on the strongest peak; it is still differentiable, used in training and
evaluation alike.
"""

from __future__ import annotations

import torch
from torch import nn


def soft_argmax_2d(heatmaps: torch.Tensor, window: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over all cells, then the expected normalised (x, y) of the cell centres.

    Args:
        heatmaps: ``B×J×h×w`` logits.
        window: if given, the softmax covers only the cells within ``window`` cells (Chebyshev
            distance) of each map's arg-max cell; ``None`` is the global soft-argmax.

    Returns:
        ``(coords, probs)``: ``B×J×2`` normalised (x, y) in [0, 1], and the ``B×J×h×w``
        probabilities (computed in float32 for stability under autocast).
    """
    b, j, h, w = heatmaps.shape
    logits = heatmaps.float()
    if window is not None:
        logits = logits.masked_fill(~_near_peak(logits, window), float("-inf"))
    probs = torch.softmax(logits.reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=torch.float32) + 0.5) / h
    x = (probs.sum(dim=2) * xs).sum(dim=-1)
    y = (probs.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1), probs


def _near_peak(logits: torch.Tensor, radius: int) -> torch.Tensor:
    """``B×J×h×w`` mask of the cells within ``radius`` of each map's arg-max cell."""
    b, j, h, w = logits.shape
    peak = logits.reshape(b, j, h * w).argmax(dim=-1)
    py, px = (peak // w)[..., None, None], (peak % w)[..., None, None]
    ys = torch.arange(h, device=logits.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=logits.device).view(1, 1, 1, w)
    return ((ys - py).abs() <= radius) & ((xs - px).abs() <= radius)


class PoseHead(nn.Module):
    """A 1×1 conv gives one heatmap per joint; without the conv (split-pose variant) the
    input channels already are the heatmaps. ``window``: local decoding (module docstring)."""

    def __init__(self, in_channels: int, num_joints: int = 16, conv: bool = True,
                 window: int | None = None):
        super().__init__()
        if not conv and in_channels != num_joints:
            raise ValueError(f"without a conv the input must have {num_joints} channels")
        if window is not None and window < 0:
            raise ValueError(f"the decoding window must be >= 0 cells, got {window}")
        self.conv = nn.Conv2d(in_channels, num_joints, kernel_size=1) if conv else nn.Identity()
        self.window = window

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns heatmap logits ``B×J×h×w``, keypoints ``B×J×2`` and their confidence ``B×J``.

        The confidence is the probability mass (of the softmax over the whole map) within one
        cell of the decoded location.
        """
        heatmaps = self.conv(features)
        coords, probs = soft_argmax_2d(heatmaps)
        if self.window is not None:
            coords, _ = soft_argmax_2d(heatmaps, self.window)
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
