"""Bootstrapped cross-entropy (Wu, Shen & van den Hengel, arXiv:1605.06885).

Pfeiffer et al. keep the hardest 25% of pixels. Following the authors' code, the top-k is taken
per image over its non-ignored pixels (``K_i = ceil(p * n_i)``) and the kept losses are
averaged over the batch; ``p`` falls linearly from 1.0 to its target over ``warmup_steps``.
At ``p = 1`` this is exactly the plain mean cross-entropy over non-ignored pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from personkit.data.constants import SEG_IGNORE


def kept_fraction(step: int, top_k: float, warmup_steps: int) -> float:
    """Linear warm-up of the kept fraction from 1.0 to ``top_k``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return top_k
    return 1.0 - (1.0 - top_k) * step / warmup_steps


def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, top_k: float = 0.25,
                               ignore_index: int = SEG_IGNORE) -> torch.Tensor:
    """Mean CE over the hardest ``top_k`` fraction of each image's non-ignored pixels.

    Args:
        logits: B×C×H×W; target: B×H×W int64 with ``ignore_index`` for unlabelled pixels.
    """
    if not 0.0 < top_k <= 1.0:
        raise ValueError(f"top_k must be in (0, 1], got {top_k}")
    pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    pixel = pixel.flatten(1)
    valid = (target != ignore_index).flatten(1)
    n_valid = valid.sum(dim=1)
    if int(n_valid.sum()) == 0:
        return logits.sum() * 0.0
    if top_k >= 1.0:
        return pixel[valid].mean()
    keep = torch.ceil(n_valid.float() * top_k).long()
    k_max = int(keep.max())
    ranked = pixel.masked_fill(~valid, float("-inf")).topk(k_max, dim=1).values
    chosen = torch.arange(k_max, device=pixel.device)[None, :] < keep[:, None]
    return ranked[chosen].sum() / max(1, int(keep.sum()))


class BootstrappedCrossEntropy(torch.nn.Module):
    """Bootstrapped CE with a warm-up of the kept fraction (the authors use 5000 steps)."""

    def __init__(self, top_k: float = 0.25, warmup_steps: int = 5000,
                 ignore_index: int = SEG_IGNORE):
        super().__init__()
        self.top_k, self.warmup_steps, self.ignore_index = top_k, warmup_steps, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        p = kept_fraction(step, self.top_k, self.warmup_steps)
        return bootstrapped_cross_entropy(logits, target, p, self.ignore_index)


__all__ = ["BootstrappedCrossEntropy", "bootstrapped_cross_entropy", "kept_fraction"]
