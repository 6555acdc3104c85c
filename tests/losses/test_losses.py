"""Losses against brute-force references."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from personkit.data.constants import IGNORE_INDEX
from personkit.losses import (
    MultiTaskLoss,
    attribute_loss,
    batch_hard_triplet_loss,
    bootstrapped_cross_entropy,
    pose_loss,
)
from personkit.losses.segmentation import kept_fraction
from personkit.models import PersonOutputs


def brute_force_triplet(emb, pids, margin):
    losses = []
    for a in range(len(emb)):
        pos = [torch.dist(emb[a], emb[p]) for p in range(len(emb)) if pids[p] == pids[a]]
        neg = [torch.dist(emb[a], emb[n]) for n in range(len(emb)) if pids[n] != pids[a]]
        diff = max(pos) - min(neg)
        losses.append(F.softplus(diff) if margin is None else F.relu(margin + diff))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("margin", [None, 0.3])
def test_batch_hard_triplet_matches_brute_force(margin):
    torch.manual_seed(0)
    emb = torch.randn(12, 5, dtype=torch.float64)
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    got = batch_hard_triplet_loss(emb, pids, margin)
    # The loss computes in float32 with the expansion |a|^2 + |b|^2 - 2a.b: each distance errs
    # by at most (D + 3) u (|a|^2 + |b|^2) / (2 d) (u = 2^-24), and the loss is 1-Lipschitz in
    # each of an anchor's two distances.
    sq, d = emb.pow(2).sum(1), torch.cdist(emb, emb)
    nearest = d[~torch.eye(len(emb), dtype=torch.bool)].min()
    bound = 2 * (emb.shape[1] + 3) * 2.0 ** -24 * 2 * float(sq.max()) / (2 * float(nearest))
    expected = brute_force_triplet(emb, pids, margin)
    assert abs(float(got) - float(expected)) <= bound, (float(got), float(expected), bound)


def test_triplet_without_negatives_is_zero_with_gradient():
    emb = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(emb, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and emb.grad is not None


def test_bootstrapped_ce_at_full_fraction_equals_plain_ce():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 6, 7)
    target = torch.randint(0, 5, (3, 6, 7))
    target[0, :2] = 255
    plain = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(bootstrapped_cross_entropy(logits, target, 1.0), plain, atol=1e-6)


def test_bootstrapped_ce_keeps_hardest_fraction_per_image():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 4, 5)
    target = torch.randint(0, 4, (2, 4, 5))
    target[1, 0] = 255  # image 1 has 15 valid pixels
    pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none").flatten(1)
    kept = []
    for i, n_valid in enumerate((20, 15)):
        values = pixel[i][target[i].flatten() != 255]
        kept.append(values.sort(descending=True).values[: -(-n_valid // 4)])
    expected = torch.cat(kept).mean()
    assert torch.allclose(bootstrapped_cross_entropy(logits, target, 0.25), expected, atol=1e-6)


def test_kept_fraction_warms_up_linearly():
    assert kept_fraction(0, 0.25, 100) == 1.0
    assert kept_fraction(50, 0.25, 100) == pytest.approx(0.625)
    assert kept_fraction(100, 0.25, 100) == 0.25 == kept_fraction(7, 0.25, 0)


def test_attribute_loss_mean_with_ignored_labels():
    torch.manual_seed(0)
    logits = {"a": torch.randn(4, 2), "b": torch.randn(4, 3), "c": torch.randn(4, 8)}
    targets = torch.tensor([[0, 1, IGNORE_INDEX], [1, 2, IGNORE_INDEX], [0, IGNORE_INDEX, 3],
                            [1, 0, IGNORE_INDEX]])
    expected = torch.stack([
        F.cross_entropy(logits["a"], targets[:, 0]),
        F.cross_entropy(logits["b"], targets[:, 1], ignore_index=IGNORE_INDEX),
        F.cross_entropy(logits["c"], targets[:, 2], ignore_index=IGNORE_INDEX),
    ]).mean()
    assert torch.allclose(attribute_loss(logits, targets, ["a", "b", "c"]), expected)
    all_ignored = torch.full((4, 3), IGNORE_INDEX)
    assert attribute_loss(logits, all_ignored, ["a", "b", "c"]).item() == 0.0


def test_pose_loss_averages_annotated_joints_only():
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[0.3, 0.4], [1.0, 0.0], [9.0, 9.0]]])
    valid = torch.tensor([[True, True, False]])
    assert pose_loss(pred, target, valid, "l2").item() == pytest.approx((0.5 + 1.0) / 2)
    assert pose_loss(pred, target, valid, "l1").item() == pytest.approx((0.7 + 1.0) / 2)
    assert pose_loss(pred, target, torch.zeros(1, 3, dtype=torch.bool)).item() == 0.0


def test_pose_loss_sum_reduction_sums_joints_and_averages_annotated_people():
    """The authors' reduction: a sum over joints, averaged over the samples that have at least
    one annotated joint (the second person below has none and does not count)."""
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[0.3, 0.4], [1.0, 0.0], [9.0, 9.0]], [[1.0, 1.0]] * 3])
    valid = torch.tensor([[True, True, False], [False, False, False]])
    assert pose_loss(pred, target, valid, "l2", "sum").item() == pytest.approx(0.5 + 1.0)
    assert pose_loss(pred, target, valid, "l2", "mean").item() == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="reduction 'median'"):
        pose_loss(pred, target, valid, "l2", "median")
    batch = {"joints": target, "joints_valid": valid}
    summed = MultiTaskLoss(pose_reduction="sum")(PersonOutputs(keypoints=pred), batch, ["pose"])
    assert summed["loss_pose"].item() == pytest.approx(1.5)


def test_multitask_loss_routes_and_weights_tasks():
    torch.manual_seed(0)
    out = PersonOutputs(embedding=torch.randn(4, 6), keypoints=torch.rand(4, 16, 2))
    batch = {"pid": torch.tensor([0, 0, 1, 1]), "joints": torch.rand(4, 16, 2),
             "joints_valid": torch.ones(4, 16, dtype=torch.bool)}
    crit = MultiTaskLoss(weights={"pose": 2.0})
    losses = crit(out, batch, ["reid", "pose"])
    assert set(losses) == {"loss_reid", "loss_pose", "loss"}
    assert torch.allclose(losses["loss"], losses["loss_reid"] + 2 * losses["loss_pose"])
    unc = MultiTaskLoss(uncertainty=True)
    assert len(list(unc.parameters())) == 5
    for t, s in itertools.product(["pose"], [0.7]):
        unc.log_vars[t].data.fill_(s)
    got = unc(out, batch, ["pose"])
    expected = torch.exp(torch.tensor(-0.7)) * got["loss_pose"] + 0.7
    assert torch.allclose(got["loss"], expected)


def test_heatmap_loss_is_lowest_at_the_target_cell():
    from personkit.losses.pose import heatmap_loss

    target = torch.tensor([[[(2 + 0.5) / 6, (3 + 0.5) / 8]]])  # cell (x=2, y=3) of 8×6
    valid = torch.ones(1, 1, dtype=torch.bool)
    losses = {}
    for y, x in ((3, 2), (3, 4), (0, 0)):
        heat = torch.zeros(1, 1, 8, 6)
        heat[0, 0, y, x] = 8.0
        losses[(y, x)] = heatmap_loss(heat, target, valid, sigma=1.0).item()
    assert losses[(3, 2)] < losses[(3, 4)] < losses[(0, 0)]
    assert heatmap_loss(heat, target, torch.zeros(1, 1, dtype=torch.bool)).item() == 0.0


def test_class_balanced_attribute_weights_from_training_labels():
    """Issue #34: DeepMAR's exp(1 - p_c) and the balanced 1 / (K p_c) weights from the share
    of each class among an attribute's known training labels."""
    from personkit.losses.classification import attribute_class_weights

    classes = {"backpack": 2, "age": 4}
    labels = np.array([[0, 1]] * 6 + [[1, 2]] * 2 + [[0, 0]] + [[IGNORE_INDEX, 3]])
    assert attribute_class_weights(labels, classes, "none") is None
    deep = attribute_class_weights(labels, classes, "deepmar")
    assert deep["backpack"] == pytest.approx([np.exp(1 - 7 / 9), np.exp(1 - 2 / 9)], abs=1e-6)
    assert deep["age"] == pytest.approx(np.exp(1 - np.array([1, 6, 2, 1]) / 10), abs=1e-6)
    inv = attribute_class_weights(labels, classes, "inverse")
    assert inv["backpack"] == pytest.approx([9 / 14, 9 / 4], abs=1e-6)
    shares = np.array([7 / 9, 2 / 9])  # every class carries the same total weight
    assert np.asarray(inv["backpack"]) * shares == pytest.approx([0.5, 0.5])
    no_old = labels.copy()
    no_old[:, 1] = np.where(no_old[:, 1] == 3, 1, no_old[:, 1])
    with pytest.raises(ValueError, match="attribute 'age': class 3 has no training label.*"
                                         "deepmar"):
        attribute_class_weights(no_old, classes, "inverse")
    assert attribute_class_weights(no_old, classes, "deepmar")["age"][3] == pytest.approx(np.e)
    with pytest.raises(ValueError, match="attribute 'backpack' has no training label"):
        attribute_class_weights(np.full((3, 2), IGNORE_INDEX), classes, "deepmar")
    with pytest.raises(ValueError, match="attribute_balance must be one of"):
        attribute_class_weights(labels, classes, "focal")


def test_weighted_attribute_loss_is_the_weighted_mean_cross_entropy():
    from personkit.losses.classification import attribute_loss

    logits = {"hat": torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])}
    targets = torch.tensor([[0], [1], [IGNORE_INDEX]])
    w = torch.tensor([0.6, 3.0])
    got = attribute_loss(logits, targets, ["hat"], class_weights={"hat": w})
    ce = -torch.log_softmax(logits["hat"], 1)
    want = (w[0] * ce[0, 0] + w[1] * ce[1, 1]) / (w[0] + w[1])
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    plain = attribute_loss(logits, targets, ["hat"])
    assert float(plain) == pytest.approx(float((ce[0, 0] + ce[1, 1]) / 2), rel=1e-6)
