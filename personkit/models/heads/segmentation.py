"""Panoptic-FPN semantic segmentation branch (Kirillov et al., CVPR 2019).

Each pyramid level of stride ``s`` gets ``max(1, log2(s / 4))`` blocks of
[3×3 conv -> GroupNorm -> ReLU], each followed by ×2 bilinear upsampling while the level is
still coarser than 1/4 resolution. The levels are summed at 1/4 resolution and a 1×1 conv
predicts the classes. As in Pfeiffer et al. (Sec. 3), a last level at stride 16 (stride-1
last block) gets one upsampling step fewer than the usual stride-32 level: the structure is
derived from the strides, nothing is hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(in_ch: int, out_ch: int, groups: int, upsample: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.GroupNorm(math.gcd(groups, out_ch), out_ch),
        nn.ReLU(inplace=True),
    ]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


class SemanticFPNHead(nn.Module):
    """Args:
    in_channels: channels of every pyramid level (the FPN width).
    strides: stride of each level, e.g. ``[4, 8, 16, 16]``.
    num_classes: part classes (20 LIP classes or 5 merged).
    channels: width of the branch (128 in Panoptic FPN).
    norm_groups: GroupNorm groups (32 in Panoptic FPN).
    """

    def __init__(self, in_channels: int, strides: Sequence[int], num_classes: int,
                 channels: int = 128, norm_groups: int = 32, common_stride: int = 4):
        super().__init__()
        if not strides:
            raise ValueError("SemanticFPNHead needs at least one pyramid level")
        self.common_stride = common_stride
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            steps = int(round(math.log2(stride / common_stride)))
            n_blocks = max(1, steps)
            blocks = [
                _block(in_channels if k == 0 else channels, channels, norm_groups,
                       upsample=k < steps)
                for k in range(n_blocks)
            ]
            self.scale_heads.append(nn.Sequential(*blocks))
        self.predictor = nn.Conv2d(channels, num_classes, 1)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits at 1/``common_stride`` of the input (the first level's size)."""
        size = pyramid[0].shape[-2:]
        out = None
        for head, level in zip(self.scale_heads, pyramid, strict=True):
            y = head(level)
            if y.shape[-2:] != size:  # odd input sizes; exact for multiples of the stride
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return self.predictor(out)
