"""Feature Pyramid Network neck (Lin et al., CVPR 2017) over C2-C5.

Lateral 1×1 convs, top-down bilinear upsampling to the next level's size and addition, then a
3×3 output conv per level. Because personkit's C5 has the same stride as C4, the top-down step
from P5 to P4 is a plain addition at equal size; nothing here assumes stride doubling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Args: in_channels of C2..C5 (from the backbone); out_channels per pyramid level."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        self.out_channels = out_channels

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            top = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear",
                                align_corners=False)
            laterals[i - 1] = laterals[i - 1] + top
        return [conv(x) for conv, x in zip(self.output, laterals, strict=True)]
