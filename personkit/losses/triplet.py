"""Batch-hard triplet loss (Hermans, Beyer & Leibe, arXiv:1703.07737)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_euclidean(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """B×B Euclidean distances; ``eps`` inside the square root keeps gradients finite."""
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return torch.sqrt(d2.clamp_min(0.0) + eps)


def batch_hard_triplet_loss(embeddings: torch.Tensor, pids: torch.Tensor,
                            margin: float | None = None) -> torch.Tensor:
    """For every anchor: hardest positive vs hardest negative in the batch.

    Args:
        embeddings: B×D float embeddings.
        pids: B identity labels.
        margin: ``None`` for the soft margin ``softplus(d_ap - d_an)`` (the paper's default),
            else the hinge ``relu(margin + d_ap - d_an)``.

    Anchors without any negative in the batch are left out; a batch without any valid anchor
    gives a zero loss that still depends on ``embeddings``.
    """
    dist = pairwise_euclidean(embeddings.float())
    same = pids[:, None] == pids[None, :]
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    valid = torch.isfinite(hardest_neg)
    if not valid.any():
        return embeddings.sum() * 0.0
    diff = hardest_pos[valid] - hardest_neg[valid]
    losses = F.softplus(diff) if margin is None else F.relu(margin + diff)
    return losses.mean()
