"""Attribute classification head (Pfeiffer et al., GCPR 2019, Fig. 2f)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class AttributeHead(nn.Module):
    """BatchNorm1d -> ReLU -> one Linear per attribute, on the pooled embedding.

    Args:
        in_channels: embedding width.
        attributes: attribute name -> number of classes, in output order.
    """

    def __init__(self, in_channels: int, attributes: Mapping[str, int]):
        super().__init__()
        if not attributes:
            raise ValueError("AttributeHead needs at least one attribute")
        self.bn = nn.BatchNorm1d(in_channels)
        self.act = nn.ReLU(inplace=False)
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(in_channels, n) for name, n in attributes.items()}
        )

    def forward(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.act(self.bn(embedding))
        return {name: fc(x) for name, fc in self.classifiers.items()}
