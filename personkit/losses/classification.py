"""Identity and attribute classification losses (Pfeiffer et al., GCPR 2019, Sec. 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from personkit.data.constants import IGNORE_INDEX


def id_loss(logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the training identities."""
    return F.cross_entropy(logits.float(), pids)


def attribute_loss(logits: Mapping[str, torch.Tensor], targets: torch.Tensor,
                   names: Sequence[str], ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean of the per-attribute cross-entropies; ``targets`` is B×A in the order of ``names``.

    Labels equal to ``ignore_index`` do not count; an attribute with no label in the batch is
    left out of the mean.
    """
    losses = []
    for a, name in enumerate(names):
        target = targets[:, a]
        if (target != ignore_index).any():
            losses.append(F.cross_entropy(logits[name].float(), target, ignore_index=ignore_index))
    if not losses:
        return sum(v.sum() for v in logits.values()) * 0.0
    return torch.stack(losses).mean()
