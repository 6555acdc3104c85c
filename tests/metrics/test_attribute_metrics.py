"""Market-1501 attribute accuracy (official protocol) and label-based mA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES
from personkit.metrics import AttributeEvaluator, attribute_accuracy

NAMES = {"gender": ("male", "female"), "age": ("y", "t", "a", "o"),
         "upcolor": MARKET_ATTRIBUTES["upcolor"]}
GT = np.array([[0, 0, 2], [1, 2, IGNORE_INDEX], [1, 3, 5], [0, 1, IGNORE_INDEX]])
PRED = np.array([[0, 0, 2], [1, 2, 0], [0, 3, 4], [0, 3, 0]])


def test_hand_computed_case_with_unlabelled_colours():
    out = attribute_accuracy(PRED, GT, NAMES)
    # upcolor: image 0 right, image 2 wrong, images 1 and 3 have no colour -> always wrong.
    assert out["acc/gender"] == 0.75 and out["acc/age"] == 0.75 and out["acc/upcolor"] == 0.25
    assert out["mean"] == pytest.approx((0.75 + 0.75 + 0.25) / 3)
    # gender: positives (female) images 1, 2 -> TPR 1/2; negatives 0, 3 -> TNR 1.
    assert out["mA/gender"] == 0.75 and out["mA"] == 0.75
    assert "mA/age" not in out and "mA/upcolor" not in out


def test_pids_drop_distractors_and_junk():
    out = attribute_accuracy(PRED, GT, NAMES, pids=[1, 0, 3, -1])  # keeps images 0 and 2
    assert (out["acc/gender"], out["acc/age"], out["acc/upcolor"]) == (0.5, 1.0, 0.5)
    assert out["mA/gender"] == pytest.approx((0.0 + 1.0) / 2)


def test_ignored_binary_labels_are_skipped_in_ma_but_wrong_in_accuracy():
    gt = np.array([[1], [0], [IGNORE_INDEX]])
    pred = np.array([[1], [0], [0]])
    out = attribute_accuracy(pred, gt, ["hat"])
    assert out["mA/hat"] == 1.0 and out["acc/hat"] == pytest.approx(2 / 3)


def test_full_market_vocabulary_keys_and_unknown_names():
    n = len(MARKET_ATTRIBUTES)
    zeros = np.zeros((3, n), int)
    out = attribute_accuracy(zeros, zeros, list(MARKET_ATTRIBUTES))
    assert out["mean"] == 1.0
    assert sum(k.startswith("mA/") for k in out) == 9  # every attribute but age and colours
    with pytest.raises(ValueError, match="unknown attributes"):
        attribute_accuracy(np.zeros((1, 1)), np.zeros((1, 1)), ["shoes"])
    with pytest.raises(ValueError, match="N x 3"):
        attribute_accuracy(PRED[:, :2], GT[:, :2], NAMES)


def test_evaluator_in_chunks_equals_pure_function():
    rng = np.random.default_rng(0)
    n_cls = [len(c) for c in MARKET_ATTRIBUTES.values()]
    gt = np.stack([rng.integers(0, k, 50) for k in n_cls], 1)
    gt[rng.random(gt.shape) < 0.1] = IGNORE_INDEX
    pred = np.stack([rng.integers(0, k, 50) for k in n_cls], 1)
    pids = rng.integers(-1, 5, 50)
    ev = AttributeEvaluator()
    for s in (slice(0, 7), slice(7, 30), slice(30, 50)):
        ev.process(torch.from_numpy(pred[s]), torch.from_numpy(gt[s]), pids[s])
    assert ev.evaluate() == pytest.approx(attribute_accuracy(pred, gt, MARKET_ATTRIBUTES, pids))


def test_balanced_accuracy_and_f1_see_through_a_majority_guess():
    """Issue #34: a model that says "no backpack" for everyone scores the share without one as
    accuracy (0.7 here) but 0.5 balanced accuracy and F1 0 on the positive class; on age (4
    classes, 3 present) the majority guess scores 1/3."""
    names = {"backpack": ["no", "yes"], "age": ["young", "teenager", "adult", "old"]}
    gt = np.array([[0, 1]] * 7 + [[1, 2]] * 2 + [[1, 0]])
    guess = np.array([[0, 1]] * 10)
    s = attribute_accuracy(guess, gt, names)
    assert s["acc/backpack"] == pytest.approx(0.7) and s["bacc/backpack"] == 0.5
    assert s["F1/backpack"] == 0.0 and s["mA/backpack"] == 0.5
    assert s["acc/age"] == pytest.approx(0.7) and s["bacc/age"] == pytest.approx(1 / 3)
    assert "F1/age" not in s and "mA/age" not in s
    assert s["mA"] == 0.5 and s["mF1"] == 0.0
    assert s["bacc_mean"] == pytest.approx((0.5 + 1 / 3) / 2)


def test_balanced_accuracy_and_f1_by_hand_and_summed_over_batches():
    names = {"hat": ["no", "yes"], "upcolor": ["black", "white", "red"]}
    gt = np.array([[1, 0], [1, 1], [1, IGNORE_INDEX], [0, 2], [0, 2], [0, 1]])
    pred = np.array([[1, 0], [0, 1], [1, 1], [1, 2], [0, 0], [0, 1]])
    s = attribute_accuracy(pred, gt, names)
    # hat: TP 2, FN 1, FP 1, TN 2 -> recalls 2/3 (yes) and 2/3 (no); F1 = 4 / (4 + 1 + 1)
    assert s["bacc/hat"] == pytest.approx(2 / 3) and s["F1/hat"] == pytest.approx(4 / 6)
    # upcolor: black 1/1, white 2/2, red 1/2 (the ignored label is left out), official
    # accuracy 4/6 (the ignored label counts wrong)
    assert s["bacc/upcolor"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert s["acc/upcolor"] == pytest.approx(4 / 6)
    ev = AttributeEvaluator(names)
    ev.process(pred[:2], gt[:2])
    ev.process(pred[2:], gt[2:])
    assert ev.evaluate() == pytest.approx(s)


def test_the_balanced_threshold_and_cross_fitted_decisions():
    """The threshold maximising balanced accuracy sits between the scores it separates; with
    decisions from the other half of the identities, a threshold learned on a rare class
    recovers it on held-out identities (issue #34)."""
    from personkit.metrics.attributes import best_threshold, calibrate_thresholds

    assert best_threshold([0.9, 0.3, 0.2, 0.1, 0.05], [1, 1, 0, 0, 0]) == pytest.approx(0.25)
    assert best_threshold([0.2, 0.4], [0, 0]) == 0.5  # one class only: the arg-max
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(200), 3)
    carries = np.repeat(rng.random(200) < 0.1, 3)  # a rare attribute, per identity
    p = np.clip(np.where(carries, 0.3, 0.1) + rng.normal(0, 0.05, len(pids)), 0, 1)
    gt = np.stack([carries.astype(int), np.where(rng.random(len(pids)) < 0.5, 1, 0)], 1)
    gt[::17, 0] = IGNORE_INDEX
    both = np.stack([p, rng.random(len(pids))], 1)
    thresholds, decided = calibrate_thresholds(both, gt, ["hat", "noise"], pids)
    assert 0.15 < thresholds["hat"] < 0.25  # between the two clouds, far below 0.5
    assert thresholds["noise"] == 0.5  # a fitted threshold that does not validate: the arg-max
    s = attribute_accuracy(decided, gt, {"hat": ["no", "yes"], "noise": ["no", "yes"]})
    assert s["bacc/hat"] > 0.9 and abs(s["bacc/noise"] - 0.5) < 0.1
    argmax = attribute_accuracy((both > 0.5).astype(int), gt,
                                {"hat": ["no", "yes"], "noise": ["no", "yes"]})
    assert argmax["bacc/hat"] == 0.5  # the arg-max never says "yes"
    # a threshold calibrated before (e.g. on crops, for track means) is what a fit must beat
    # and what stays where it does not (issue 34)
    kept, _ = calibrate_thresholds(both, gt, ["hat", "noise"], pids,
                                   fallback={"hat": 0.2, "noise": 0.37})
    assert kept == {"hat": 0.2, "noise": 0.37}  # 0.2 already separates the clouds
    beaten, _ = calibrate_thresholds(both, gt, ["hat", "noise"], pids, fallback={"hat": 0.45})
    assert beaten == {"hat": thresholds["hat"], "noise": 0.5}  # 0.45 misses most hats
