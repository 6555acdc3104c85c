"""Identity and attribute classification losses (Pfeiffer et al., GCPR 2019, Sec. 3), and the
class weights of a class-balanced attribute loss (:func:`attribute_class_weights`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from personkit.data.constants import IGNORE_INDEX

#: How each attribute's cross-entropy weighs its classes: ``none`` (the paper), ``deepmar``
#: or ``inverse`` (:func:`attribute_class_weights`).
ATTRIBUTE_BALANCE = ("none", "deepmar", "inverse")


def id_loss(logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over the training identities."""
    return F.cross_entropy(logits.float(), pids)


def attribute_loss(logits: Mapping[str, torch.Tensor], targets: torch.Tensor,
                   names: Sequence[str], ignore_index: int = IGNORE_INDEX,
                   class_weights: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean of the per-attribute cross-entropies; ``targets`` is B×A in the order of ``names``.

    Labels equal to ``ignore_index`` do not count; an attribute with no label in the batch is
    left out of the mean. ``class_weights``: per attribute, a weight per class (a weighted
    mean over the batch's labels, as ``F.cross_entropy(weight=...)``).
    """
    losses = []
    for a, name in enumerate(names):
        target = targets[:, a]
        if (target != ignore_index).any():
            weight = None if class_weights is None else class_weights.get(name)
            if weight is not None:
                weight = weight.to(logits[name].device)
            losses.append(F.cross_entropy(logits[name].float(), target, weight=weight,
                                          ignore_index=ignore_index))
    if not losses:
        return sum(v.sum() for v in logits.values()) * 0.0
    return torch.stack(losses).mean()


def attribute_class_weights(labels: np.ndarray, classes: Mapping[str, int],
                            mode: str) -> dict[str, list[float]] | None:
    """Class weights of each attribute's cross-entropy from its training labels (``N x A``
    class indices in the order of ``classes``, ``IGNORE_INDEX`` where unknown), ``p_c`` being
    the share of class ``c`` among an attribute's known labels:

    * ``none``: None (every class weighs 1: the paper's loss);
    * ``deepmar``: ``w_c = exp(1 - p_c)``, the weighted sigmoid cross-entropy of DeepMAR (Li
      et al., ACPR 2015: ``exp(1 - p)`` for positives, ``exp(p)`` for negatives), which is
      the same for two classes and extends to several;
    * ``inverse``: ``w_c = 1 / (K p_c)`` for the ``K`` classes, the "balanced" weights (King
      and Zeng 2001; scikit-learn's ``class_weight="balanced"``): every class carries the
      same total weight, the loss whose minimiser maximises balanced accuracy.

    Raises:
        ValueError: an unknown mode; an attribute without a single training label; with
            ``inverse``, a class without one (its weight would be infinite: use ``deepmar``
            or give it labels), naming the attribute and class.
    """
    if mode not in ATTRIBUTE_BALANCE:
        raise ValueError(f"loss.attribute_balance must be one of {ATTRIBUTE_BALANCE}, got "
                         f"{mode!r}")
    if mode == "none":
        return None
    labels = np.asarray(labels).reshape(-1, len(classes))
    out = {}
    for a, (name, k) in enumerate(classes.items()):
        known = labels[:, a][labels[:, a] != IGNORE_INDEX]
        if not known.size:
            raise ValueError(f"attribute {name!r} has no training label: a class-balanced "
                             f"loss (loss.attribute_balance={mode}) cannot weigh its classes")
        share = np.bincount(known.astype(np.int64), minlength=k)[:k] / known.size
        if mode == "inverse" and not share.all():
            missing = int(np.flatnonzero(share == 0)[0])
            raise ValueError(f"attribute {name!r}: class {missing} has no training label, so "
                             f"its inverse-frequency weight is infinite; use "
                             f"loss.attribute_balance=deepmar")
        weights = np.exp(1.0 - share) if mode == "deepmar" else 1.0 / (k * np.maximum(share,
                                                                                        1e-12))
        out[name] = [round(float(w), 6) for w in weights]
    return out
