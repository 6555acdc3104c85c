"""COCO person AP through pycocotools (personkit/metrics/detection.py), on hand-computed cases."""

import numpy as np
import pytest

from personkit.metrics.detection import coco_person_ap

pytest.importorskip("pycocotools")

TARGETS = [np.array([[10, 10, 50, 90], [100, 10, 140, 90]]), np.array([[20, 20, 60, 100]])]
IGNORE = [np.zeros((0, 4)), np.array([[200, 0, 240, 80]])]


def test_perfect_detections_score_one():
    dets = [np.c_[t, np.ones(len(t))] for t in TARGETS]
    scores = coco_person_ap(TARGETS, IGNORE, dets)
    assert scores["AP"] == scores["AP50"] == scores["AP75"] == 1.0
    assert (scores["images"], scores["persons"], scores["detections"]) == (2, 3, 3)


def test_a_false_positive_ranked_first_and_an_ignored_region():
    # by score: 0.99 on the ignore region (neither hit nor miss), 0.95 a false positive, then
    # three hits: precision 1/2, 2/3, 3/4 at recall 1/3, 2/3, 1 -> interpolated 0.75 everywhere
    dets = [np.array([[10, 10, 50, 90, 0.9], [100, 12, 141, 92, 0.8], [300, 300, 340, 380, 0.95]]),
            np.array([[20, 20, 60, 100, 0.7], [200, 0, 240, 80, 0.99]])]
    scores = coco_person_ap(TARGETS, IGNORE, dets)
    assert scores["AP50"] == pytest.approx(0.75) and scores["AP75"] == pytest.approx(0.75)
    # the 0.8 box has IoU 3120/3360 = 0.929 with its person: a miss at 0.95 only
    assert scores["AP"] < 0.75


def test_no_detections_and_no_persons():
    assert coco_person_ap(TARGETS, IGNORE, [np.zeros((0, 5))] * 2)["AP50"] == 0.0
    with pytest.raises(ValueError, match="no ground-truth person"):
        coco_person_ap([np.zeros((0, 4))], [np.zeros((0, 4))], [np.zeros((0, 5))])
