"""Pedestrian attribute metrics on Market-1501 attributes (Lin et al., arXiv:1703.07220).

* ``acc/<name>`` and ``mean``: the official protocol of ``evaluate_market_attribute.m``
  (vana77/Market-1501_Attribute; protocols.md section 2): the paper's number. Every attribute
  is scored over all given images; a colour counts as correct only when the identity has that
  colour, so an image whose ground truth is ``IGNORE_INDEX`` (identity with no colour
  labelled) is always wrong and stays in the denominator. The official image set is
  ``bounding_box_test`` with pid > 0; pass ``pids`` to drop pid <= 0 images.
* ``bacc/<name>``: balanced accuracy, the mean recall over the classes present in the ground
  truth (ignored labels skipped): a majority-class guess scores 1 / (classes present), 0.5
  on a binary attribute, whatever the imbalance (Brodersen et al., ICPR 2010). For a binary
  attribute it is the label-based accuracy of PETA/RAP/PA-100K, (TPR + TNR) / 2.
* ``mA/<name>`` and ``mA``: that label-based mean accuracy over the binary attributes
  (Li et al., "A Richly Annotated Dataset for Pedestrian Attribute Recognition", 2016;
  fast-reid ``attr_evaluation.py``); a class absent from the ground truth gives recall 0
  there, as fast-reid's ``eps`` denominators do (``bacc`` leaves it out instead).
* ``F1/<name>`` and ``mF1``: F1 of the positive class (class 1: "yes", "female", "long",
  ...) of each binary attribute, and their mean: how well "everyone with a backpack" is found.

Labels and predictions are class indices in the order of ``MARKET_ATTRIBUTES``; for binary
attributes class 1 is the positive ("yes", "female", "long hair", ...). The sufficient
statistics are one confusion matrix per attribute (:func:`attribute_counts`), summed over
batches and processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES

ArrayLike = Any
AttributeNames = Mapping[str, Sequence[str]] | Sequence[str]


def attribute_accuracy(pred: ArrayLike, gt: ArrayLike,
                       names: AttributeNames = MARKET_ATTRIBUTES,
                       pids: ArrayLike | None = None) -> dict[str, float]:
    """Official Market-1501-attribute accuracies, balanced accuracies, the binary label-based
    ``mA`` and positive-class F1 (see the module docstring).

    Args:
        pred: N x A predicted class indices, columns in the order of ``names``.
        gt: N x A ground-truth class indices, ``IGNORE_INDEX`` where unknown.
        names: attribute names, or a mapping name -> class names. Plain names are looked up in
            ``MARKET_ATTRIBUTES`` to find which attributes are binary.
        pids: optional N identities; images with pid <= 0 are dropped first.

    Returns:
        ``acc/<name>``, ``mean``, ``bacc/<name>``, ``bacc_mean``, ``mA/<name>`` and ``F1/<name>``
        (binary attributes), ``mA`` and ``mF1``, in [0, 1].
    """
    return attribute_scores(attribute_counts(pred, gt, names, pids), names)


def attribute_counts(pred: ArrayLike, gt: ArrayLike, names: AttributeNames = MARKET_ATTRIBUTES,
                     pids: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Sufficient statistics of :func:`attribute_accuracy`; add them up over batches.

    Returns:
        ``images`` (1,), ``correct`` (A,) and per attribute ``confusion/<name>`` (C x C:
        ground truth by row, prediction by column; ignored labels and predictions outside the
        classes are left out, so the official accuracy still counts them wrong).
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != len(names):
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be N x {len(names)}")
    if pids is not None:
        keep = np.asarray(pids).reshape(-1) > 0
        pred, gt = pred[keep], gt[keep]
    known = gt != IGNORE_INDEX
    out = {"images": np.array([len(gt)]), "correct": ((pred == gt) & known).sum(0)}
    for a, (name, k) in enumerate(zip(names, num_classes(names), strict=True)):
        ok = known[:, a] & (pred[:, a] >= 0) & (pred[:, a] < k) & (gt[:, a] < k)
        cells = gt[ok, a].astype(np.int64) * k + pred[ok, a].astype(np.int64)
        out[f"confusion/{name}"] = np.bincount(cells, minlength=k * k).reshape(k, k)
    return out


def attribute_scores(counts: Mapping[str, np.ndarray],
                     names: AttributeNames = MARKET_ATTRIBUTES) -> dict[str, float]:
    """Scores from (summed) :func:`attribute_counts`."""
    acc = counts["correct"] / max(1, int(counts["images"][0]))
    out = {f"acc/{n}": float(a) for n, a in zip(names, acc, strict=True)}
    out["mean"] = float(acc.mean())
    label_ma, f1 = {}, {}
    for name in names:
        m = np.asarray(counts[f"confusion/{name}"], np.float64)
        support = m.sum(1)
        recall = np.diag(m) / np.maximum(support, 1)
        out[f"bacc/{name}"] = float(recall[support > 0].mean()) if support.any() else float(
            "nan")
        if len(m) == 2:
            label_ma[name] = float(recall.mean())  # an absent class counts as recall 0
            tp, fp, fn = m[1, 1], m[0, 1], m[1, 0]
            f1[name] = float(2 * tp / max(1.0, 2 * tp + fp + fn))
    out["bacc_mean"] = float(np.nanmean([out[f"bacc/{n}"] for n in names]))
    out.update({f"mA/{n}": v for n, v in label_ma.items()})
    out["mA"] = float(np.mean(list(label_ma.values()))) if label_ma else float("nan")
    out.update({f"F1/{n}": v for n, v in f1.items()})
    out["mF1"] = float(np.mean(list(f1.values()))) if f1 else float("nan")
    return out


def num_classes(names: AttributeNames) -> list[int]:
    """Number of classes per attribute, from a mapping or from ``MARKET_ATTRIBUTES``."""
    if isinstance(names, Mapping):
        return [len(c) for c in names.values()]
    unknown = [n for n in names if n not in MARKET_ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; pass a mapping name -> class names "
                         f"or use names from: {', '.join(MARKET_ATTRIBUTES)}")
    return [len(MARKET_ATTRIBUTES[n]) for n in names]


def best_threshold(p_pos: ArrayLike, positive: ArrayLike) -> float:
    """The decision threshold on the positive class's probability that maximises balanced
    accuracy (Youden's J = TPR + TNR - 1) on ``p_pos`` with labels ``positive`` (bool); the
    midpoint between two neighbouring probabilities, ties broken towards 0.5. Without both
    classes present: 0.5 (the arg-max decision)."""
    p, y = np.asarray(p_pos, np.float64), np.asarray(positive, bool)
    if y.all() or not y.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    tpr = np.cumsum(y) / y.sum()  # deciding "positive" for the first i + 1 scores
    fpr = np.cumsum(~y) / (~y).sum()
    last = np.r_[p[1:] < p[:-1], True]  # a cut only between distinct probabilities
    j = np.where(last, tpr - fpr, -np.inf)
    cuts = np.r_[(p[:-1] + p[1:]) / 2, p[-1] / 2]
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])


def bagged_threshold(p_pos: np.ndarray, positive: np.ndarray, groups: np.ndarray,
                     rounds: int = 100, seed: int = 0) -> float:
    """The median of :func:`best_threshold` over ``rounds`` bootstrap resamples of the
    ``groups`` (identities, drawn with replacement, all their images each time): a rare
    attribute has few positive identities, and a threshold fitted on them once follows their
    noise (Breiman's bagging)."""
    ids, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(rounds):
        take = np.concatenate([members[i] for i in rng.integers(len(ids), size=len(ids))])
        fits.append(best_threshold(p_pos[take], positive[take]))
    return float(np.median(fits))


def calibrate_thresholds(p_pos: ArrayLike, gt: ArrayLike, names: Sequence[str],
                         groups: ArrayLike, fallback: Mapping[str, float] | None = None,
                         ) -> tuple[dict[str, float], np.ndarray]:
    """Per binary attribute, a decision threshold on its class-1 probability, and the
    decisions each image gets by the same rule fitted on the *other* half of the identities
    (two-fold cross-fitting by ``groups``, e.g. pids: an identity's images share its labels,
    so a fold holds whole identities), to score the decisions without fitting on what is
    scored.

    The rule: the threshold maximising balanced accuracy (:func:`bagged_threshold`), where it
    is validated: fitted on either half, it beats the arg-max (0.5; or the attribute's
    ``fallback`` threshold, e.g. one calibrated before on other data) on the other half in
    both directions; elsewhere that fallback. A loss that already balances the classes
    (``loss.attribute_balance``) makes 0.5 the balanced decision, and a rare attribute's
    fitted threshold then mostly adds noise: the check keeps such a threshold out.

    Args:
        p_pos: N x B probabilities of class 1, columns in the order of ``names``.
        gt: N x B ground-truth classes (0, 1, ``IGNORE_INDEX``).
        groups: N group ids (identities).

    Returns:
        ``({name: threshold}, N x B out-of-fold decisions)``.
    """
    p, gt, groups = np.asarray(p_pos, np.float64), np.asarray(gt), np.asarray(groups)
    ids = np.unique(groups)
    fold_of = dict(zip(ids.tolist(), np.arange(len(ids)) % 2, strict=True))
    fold = np.array([fold_of[g] for g in groups.tolist()])
    thresholds, decided = {}, np.zeros(p.shape, np.int64)
    for b, name in enumerate(names):
        known = gt[:, b] != IGNORE_INDEX
        before = (fallback or {}).get(name, 0.5)
        fitted = {f: bagged_threshold(p[known & (fold != f), b], gt[known & (fold != f), b] == 1,
                                      groups[known & (fold != f)]) for f in (0, 1)}
        validated = all(_balanced(p[known & (fold == f), b] >= t, gt[known & (fold == f), b])
                        > _balanced(p[known & (fold == f), b] >= before,
                                    gt[known & (fold == f), b]) for f, t in fitted.items())
        for f in (0, 1):
            decided[fold == f, b] = p[fold == f, b] >= (fitted[f] if validated else before)
        thresholds[name] = (bagged_threshold(p[known, b], gt[known, b] == 1, groups[known])
                            if validated else before)
    return thresholds, decided


def _balanced(decision: np.ndarray, gt: np.ndarray) -> float:
    """Balanced accuracy of yes/no ``decision`` against labels ``gt`` (0/1)."""
    pos, neg = gt == 1, gt == 0
    recalls = [float(decision[pos].mean()) if pos.any() else None,
               float((~decision[neg]).mean()) if neg.any() else None]
    present = [r for r in recalls if r is not None]
    return float(np.mean(present)) if present else 0.0
