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
