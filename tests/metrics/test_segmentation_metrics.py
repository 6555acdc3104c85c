"""Parsing metrics: protocols.md test vector S1 and the merged 5-class path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personkit.data.constants import LIP_CLASSES, LIP_TO_MERGED5
from personkit.metrics import (
    SegmentationEvaluator,
    confusion_matrix,
    merge_confusion,
    segmentation_scores,
)

S1 = [
    (np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 2, 2, 255]]),
     np.array([[0, 1, 1, 1], [0, 2, 0, 1], [0, 2, 2, 3]])),
    (np.array([[0, 0, 0], [3, 3, 0]]), np.array([[0, 0, 3], [3, 1, 0]])),
]


def test_s1_confusion_and_scores():
    m = sum(confusion_matrix(pred, gt, 4) for gt, pred in S1)
    np.testing.assert_array_equal(m, [[6, 1, 0, 1], [0, 3, 0, 0], [1, 0, 3, 0], [0, 1, 0, 1]])
    out = segmentation_scores(m)
    assert out["pixel_acc"] == pytest.approx(13 / 17)
    assert out["mean_acc"] == pytest.approx(0.75)
    np.testing.assert_allclose(out["IoU"], [2 / 3, 0.6, 0.75, 1 / 3])
    assert out["mIoU"] == pytest.approx(0.5875)


def test_s1_evaluator_accumulates_instead_of_averaging_images():
    ev = SegmentationEvaluator(4, class_names=["bg", "a", "b", "c"])
    for gt, pred in S1:
        ev.process(torch.from_numpy(pred), torch.from_numpy(gt))
    out = ev.evaluate()
    assert out["mIoU"] == pytest.approx(0.5875) and out["IoU/c"] == pytest.approx(1 / 3)
    per_image = np.mean([segmentation_scores(confusion_matrix(p, g, 4))["mIoU"] for g, p in S1])
    assert per_image == pytest.approx(0.3979, abs=1e-4)  # the wrong protocol differs


def test_absent_class_scores_zero_and_still_counts():
    gt = pred = np.zeros((2, 2), int)
    out = segmentation_scores(confusion_matrix(pred, gt, 3))
    np.testing.assert_allclose(out["IoU"], [1, 0, 0])
    assert out["mIoU"] == pytest.approx(1 / 3) and out["pixel_acc"] == 1.0


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError, match="pred labels"):
        confusion_matrix(np.array([4]), np.array([0]), 4)
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(np.zeros(3), np.zeros(4), 4)


def test_merged5_equals_confusion_of_relabelled_maps():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 20, (3, 9, 7))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.where(rng.random(gt.shape) < 0.6, gt % 255, rng.integers(0, 20, gt.shape))
    ev = SegmentationEvaluator(20, LIP_CLASSES, merge_lut=LIP_TO_MERGED5)
    ev.process(pred[:1], gt[:1])
    ev.process(pred[1:], gt[1:])
    out = ev.evaluate()
    direct = confusion_matrix(LIP_TO_MERGED5[pred], LIP_TO_MERGED5[gt], 5)
    np.testing.assert_array_equal(merge_confusion(ev.confusion, LIP_TO_MERGED5), direct)
    scores5 = segmentation_scores(direct)
    assert out["mIoU5"] == pytest.approx(scores5["mIoU"])
    assert out["pixel_acc5"] == pytest.approx(scores5["pixel_acc"])
    assert out["mIoU5"] > out["mIoU"]  # merging can only remove confusions here
    with pytest.raises(ValueError, match="merge_lut"):
        merge_confusion(np.eye(3), [0, 1])
