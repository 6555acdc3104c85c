"""PCKh: protocols.md test vectors P1 (MPII, official toolkit) and L1 (LIP, gccpm)."""

from __future__ import annotations

import numpy as np
import pytest

from personkit.data.constants import MPII_JOINTS
from personkit.metrics import (
    LIP_UBODY_JOINTS,
    PoseEvaluator,
    lip_head_size,
    mpii_head_size,
    pckh,
)

P1_OFFSETS = [
    {0: (3, 0), 1: (0, 20), 2: (9, 12), 3: (3, 4), 4: (3, 4), 5: (0, 40), 6: (0, 0),
     7: (60, 80), 8: (0, 2), 9: (0, 16), 10: (0, 14), 11: (3, 4), 12: (3, 4), 13: (18, 24),
     14: (3, 4), 15: (15, 20)},
    {1: (0, 6), 2: (5, 12), 3: (0, 12), 4: (18, 24), 6: (0, 1), 7: (1, 0), 8: (0, 2),
     9: (0, 3), 10: (30, 40), 11: (0, 4), 12: (0, 4), 13: (4, 0), 14: (0, 11), 15: (0, 12.5)},
]

L1_ROWS = """\
a.jpg,10,100,0,12,80,0,14,60,0,26,60,0,28,80,1,30,100,0,20,60,0,20,40,0,20,30,0,20,10,0,8,40,0,10,35,0,14,30,0,26,30,0,30,35,0,32,40,0
b.jpg,nan,nan,nan,12,80,0,14,60,0,26,60,0,28,80,0,nan,nan,nan,20,60,0,20,40,0,20,30,0,20,14,0,8,40,1,10,35,0,14,30,0,26,30,0,30,35,0,32,40,0"""  # noqa: E501
L1_OFFSETS = [
    {0: (6, 8), 1: (0, 11), 2: (0, 10), 9: (0, 10.5), 13: (3, 4), 15: (20, 0)},
    {1: (0, 8), 2: (0, 9), 9: (0, 2), 10: (5, 0), 13: (6, 8)},
    {},
]


def p1():
    j = np.arange(16)
    gt = np.stack([np.stack([100 + 10 * j, 200 + 5 * j], 1),
                   np.stack([300 + 7 * j, 50 + 9 * j], 1)]).astype(float)
    pred = gt.copy()
    for person, offsets in enumerate(P1_OFFSETS):
        for joint, off in offsets.items():
            pred[person, joint] += off
    annotated = np.ones((2, 16), bool)
    annotated[1, [0, 5]] = False
    head = mpii_head_size([[0, 0, 30, 40], [100, 100, 124, 132]])
    return pred, gt, annotated, head


def l1():
    rows = [line.split(",")[1:] for line in L1_ROWS.splitlines()]
    gt = np.array(rows, dtype=float).reshape(2, 16, 3)[..., :2]
    c = gt[0].copy()
    c[8] = np.nan  # c.jpg: a.jpg without its neck
    gt = np.concatenate([gt, c[None]])
    pred = gt.copy()
    for person, offsets in enumerate(L1_OFFSETS):
        for joint, off in offsets.items():
            pred[person, joint] += off
    annotated = np.isfinite(gt).all(-1)
    return pred, gt, annotated, lip_head_size(gt, annotated)


def test_head_sizes():
    np.testing.assert_allclose(mpii_head_size([[0, 0, 30, 40], [100, 100, 124, 132]]), [30, 24])
    _, gt, annotated, head = l1()
    np.testing.assert_allclose(head[:2], [20, 16])
    assert np.isnan(head[2])  # no neck: the person is skipped


def test_p1_official_mpii_toolkit():
    out = pckh(*p1())
    expected = {"Head": .75, "Shoulder": .75, "Elbow": 1.0, "Wrist": .25, "Hip": .75,
                "Knee": .5, "Ankle": .5, "Mean": 17 / 26, "UBody": 2 / 3}
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    # A's r_hip (B's misses at 13/24) and B's l_hip lie exactly on the threshold and count.
    assert out["joint/r_hip"] == 0.5 and out["joint/l_hip"] == 1.0
    assert out["joint/head_top"] == 0.5 and out["joint/upper_neck"] == 1.0
    assert out["num_skipped"] == 0
    # @0.1: A's r_ankle (exactly 0.1) and upper neck, B's upper neck.
    assert out["Mean@0.1"] == pytest.approx(3 / 26)
    assert set(out) >= {f"joint/{n}" for n in MPII_JOINTS}


def test_p1_strict_comparison_would_differ():
    pred, gt, annotated, head = p1()
    out = pckh(pred, gt, annotated, head * (1 - 1e-9))  # a hair past the threshold
    assert out["Hip"] == pytest.approx(0.25) and out["Mean"] == pytest.approx(15 / 26)


def test_l1_lip_gccpm():
    pred, gt, annotated, head = l1()
    out = pckh(pred, gt, annotated, head, ubody_joints=LIP_UBODY_JOINTS)
    expected = {"Head": .75, "Shoulder": .75, "Elbow": 1.0, "Wrist": .75, "Hip": .75,
                "Knee": .75, "Ankle": 1.0, "Mean": 21 / 26, "UBody": 13 / 16}
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    assert out["num_skipped"] == 1  # c.jpg


def test_bad_head_sizes_are_skipped_and_counted():
    pred, gt, annotated, head = p1()
    pred2, gt2 = np.concatenate([pred, pred]), np.concatenate([gt, gt + 50])  # all wrong
    out = pckh(pred2, gt2, np.concatenate([annotated, annotated]),
               np.concatenate([head, [0.0, np.inf]]))
    assert out["num_skipped"] == 2
    assert out["Mean"] == pytest.approx(17 / 26)


def test_unannotated_and_nan_ground_truth_joints_do_not_count():
    pred, gt, annotated, head = p1()
    gt[1, [0, 5]] = np.nan  # missing in the gt too; must not matter
    annotated2 = annotated.copy()
    annotated2[1, [0, 5]] = True  # claimed annotated but NaN: treated as missing
    assert pckh(pred, gt, annotated2, head) == pytest.approx(pckh(*p1()), nan_ok=True)


def test_pose_evaluator_in_chunks_equals_pure_function():
    pred, gt, annotated, head = l1()
    ev = PoseEvaluator(ubody_joints=LIP_UBODY_JOINTS)
    for s in (slice(0, 1), slice(1, 3)):
        ev.process(pred[s], gt[s], annotated[s], head[s])
    assert ev.evaluate() == pytest.approx(pckh(pred, gt, annotated, head,
                                               ubody_joints=LIP_UBODY_JOINTS))
    ev.reset()
    with pytest.raises(ValueError, match="before any process"):
        ev.evaluate()


def test_shape_errors():
    pred, gt, annotated, head = p1()
    with pytest.raises(ValueError, match="16"):
        pckh(pred[:, :15], gt[:, :15], annotated[:, :15], head)
