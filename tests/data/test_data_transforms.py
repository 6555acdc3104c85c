"""Paired geometric transforms: matrix convention, flip swaps and pixel alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personkit.data.constants import LIP_TO_MERGED5, MPII_FLIP_PAIRS
from personkit.data.transforms import (
    AffineAugment,
    affine_matrix,
    lip_transform,
    merge_parts,
    mpii_transform,
    reid_transform,
    swap_pairs,
    transform_points,
)

H, W = 60, 40


def _scene(x: int, y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Black image with a 3×3 white dot at (x, y), a mask with a class-5 patch there and a
    left-arm (14) patch elsewhere, and joints with joint 10 (r-wrist) on the dot."""
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[y - 1:y + 2, x - 1:x + 2] = 255
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y - 1:y + 2, x - 1:x + 2] = 5
    mask[40:44, 25:29] = 14
    joints = np.full((16, 2), 20.0, dtype=np.float32)
    joints[10] = (x, y)
    return image, mask, joints


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[:weights.shape[0], :weights.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def test_resize_matrix_uses_pixel_centres():
    m = affine_matrix(((20 - 1) / 2, (10 - 1) / 2), (20, 10), (20, 40))
    np.testing.assert_allclose(m, [[2, 0, 0.5], [0, 2, 0.5]])
    flipped = affine_matrix((9.5, 4.5), (20, 10), (20, 40), flip=True)
    np.testing.assert_allclose(transform_points(flipped, [[0, 0], [19, 9]]),
                               [[39 - 0.5, 0.5], [0.5, 18.5]])  # x -> W - 1 - x


def test_flip_twice_is_identity_and_swaps_left_right():
    image, mask, joints = _scene(10, 15)
    flip = AffineAugment((H, W), flip_prob=1.0)
    rng = np.random.default_rng(0)
    once = flip(image, rng, mask=mask, joints=joints)
    assert once.flipped and once.mask[41, W - 1 - 26] == 15  # left arm -> right arm
    np.testing.assert_array_equal(once.image, image[:, ::-1])
    np.testing.assert_allclose(once.joints[15], [W - 1 - 10, 15])  # r-wrist -> l-wrist slot
    twice = flip(once.image, rng, mask=once.mask, joints=once.joints,
                 joints_valid=once.joints_valid)
    np.testing.assert_array_equal(twice.image, image)
    np.testing.assert_array_equal(twice.mask, mask)
    np.testing.assert_allclose(twice.joints, joints, atol=1e-5)
    assert twice.joints_valid.all()


@pytest.mark.parametrize("seed", range(8))
def test_joint_stays_on_its_pixel_under_random_affine(seed):
    image, mask, joints = _scene(17, 23)
    aug = AffineAugment((64, 48), rotation=30, scale=(0.75, 1.25), translation=0.1,
                        flip_prob=0.5)
    t = aug(image, np.random.default_rng(seed), mask=mask, joints=joints)
    j = 15 if t.flipped else 10
    assert t.joints_valid[j]
    # tight enough to catch a half-pixel convention error
    np.testing.assert_allclose(_centroid(t.image[..., 0].astype(float)), t.joints[j], atol=0.25)
    np.testing.assert_allclose(_centroid((t.mask == 5).astype(float)), t.joints[j], atol=0.75)
    left, right = (t.mask == 14).any(), (t.mask == 15).any()
    assert (left, right) == ((False, True) if t.flipped else (True, False))
    if t.flipped:  # every paired joint moved with its partner
        original = transform_points(t.affine, joints)
        np.testing.assert_allclose(swap_pairs(original, MPII_FLIP_PAIRS), t.joints, atol=1e-4)


def test_mpii_box_crop_centre_and_outside_joints():
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    joints = np.array([[100, 95], [100 + 300, 95]] + [[100, 100]] * 14, dtype=np.float32)
    t = mpii_transform(train=False, output_size=(256, 256))(
        image, np.random.default_rng(0), joints=joints, center=(100.0, 80.0), scale=1.0)
    # centre moved down by 0.075 · 200 px lands on the output centre
    np.testing.assert_allclose(t.joints[0], [127.5, 127.5], atol=1e-4)
    assert t.joints_valid.tolist() == [True, False] + [True] * 14  # left the crop -> invalid
    with pytest.raises(ValueError, match="center and scale"):
        mpii_transform(train=False)(image, np.random.default_rng(0))


def test_unannotated_joints_stay_invalid():
    image, _, joints = _scene(10, 15)
    joints[3] = np.nan
    valid = np.ones(16, dtype=bool)
    valid[4] = False
    t = reid_transform(train=False, output_size=(H, W))(image, np.random.default_rng(0),
                                                        joints=joints, joints_valid=valid)
    assert t.joints_valid.tolist() == [j not in (3, 4) for j in range(16)]


def test_presets_are_reproducible_and_within_range():
    aug = lip_transform(train=True)
    m1, _ = aug.sample((100, 50), np.random.default_rng(3))
    m2, _ = aug.sample((100, 50), np.random.default_rng(3))
    np.testing.assert_array_equal(m1, m2)
    for seed in range(20):
        m, flip = aug.sample((100, 50), np.random.default_rng(seed))
        a = m[:, :2] / np.array([256 / 50, 256 / 100])  # undo the base resize per column
        zoom = np.sqrt(abs(np.linalg.det(a)))
        assert 0.75 - 1e-6 <= zoom <= 1.25 + 1e-6
        angle = np.degrees(np.arctan2(a[0, 1], a[1, 1]))
        assert abs(angle) <= 15 + 1e-6
    assert not reid_transform(train=False).flip_prob and reid_transform(True).flip_prob == 0.5
    assert lip_transform(train=False).rotation == 0
    with pytest.raises(ValueError, match="crop"):
        AffineAugment((8, 8), crop="center")


def test_mask_border_value():
    mask = np.full((10, 10), 7, dtype=np.uint8)
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    shift = affine_matrix((4.5, 4.5), (10, 10), (10, 10), shift=(0.5, 0.0))
    for border in (0, 255):
        out = AffineAugment((10, 10), mask_border=border).apply(shift, False, image, mask).mask
        assert (out[:, :5] == border).all() and (out[:, 5:] == 7).all()


def test_merge_parts_numpy_and_torch():
    labels = np.array([[0, 2, 5], [9, 18, 255]], dtype=np.uint8)
    expected = [[0, 1, 2], [3, 4, 255]]
    out = merge_parts(labels)
    assert out.dtype == np.uint8 and out.tolist() == expected
    out64 = merge_parts(torch.from_numpy(labels.astype(np.int64)))
    assert out64.dtype == torch.int64 and out64.tolist() == expected
    assert merge_parts(np.arange(20)).tolist() == LIP_TO_MERGED5[:20].tolist()
