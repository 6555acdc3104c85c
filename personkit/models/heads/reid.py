"""ReID embedding and ID classification heads (Pfeiffer et al., GCPR 2019, Fig. 2c/2d)."""

from __future__ import annotations

import torch
from torch import nn


class ReidHead(nn.Module):
    """Global max pooling of the backbone output: the embedding is as wide as the features.

    As in the paper (following Luo et al.'s best practices) there is no FC layer and no
    normalisation; the triplet loss works on these raw embeddings.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.amax(features, dim=(2, 3))


class IdHead(nn.Module):
    """BatchNorm1d + Linear to the training identities (the paper's Fig. 2d).

    Following the authors' code, the BatchNorm bias is frozen ("BNNeck") and the Linear layer
    has no bias and starts from N(0, 0.001).
    """

    def __init__(self, in_channels: int, num_ids: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_channels)
        self.bn.bias.requires_grad_(False)
        self.fc = nn.Linear(in_channels, num_ids, bias=False)
        nn.init.normal_(self.fc.weight, std=0.001)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(embedding))
