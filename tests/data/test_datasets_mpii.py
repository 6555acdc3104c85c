"""MPII reader on a RELEASE .mat written in the official nested struct layout, and on JSON."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from native import mpii_rect, write_json, write_mpii_mat

from personkit.data.datasets import DatasetError, read_mpii

BOX = (11.0, 21.0, 41.0, 61.0)  # 1-based head box with a 30×40 extent: head size 0.6·50 = 30


def _joints(offset: float, visible=1) -> dict:
    return {j: (100 + 10 * j + offset, 200 + 5 * j, visible) for j in range(16)}


@pytest.fixture
def mpii(tmp_path):
    partial = {0: (5.0, 6.0, 0), 9: (7.0, 8.0, "1"), 8: (9.0, 10.0, None)}
    images = [
        {"name": "000001.jpg", "train": True, "single": [1, 2],  # two persons
         "rects": [mpii_rect(partial, BOX, (50, 60), 1.5),
                   mpii_rect(_joints(0), BOX, (70, 80), 2)]},
        {"name": "000002.jpg", "train": True, "single": [2],  # rect 1: no annopoints, not single
         "rects": [mpii_rect(None, BOX, (1, 1), 1), mpii_rect(_joints(1), BOX, (2, 2), 1)]},
        {"name": "000003.jpg", "train": True, "single": [1],  # validation image (whole)
         "rects": [mpii_rect(_joints(2), BOX, (3, 3), 1)]},
        {"name": "000004.jpg", "train": False, "single": [1],  # test image: no keypoints
         "rects": [mpii_rect(None, None, (4, 4), 1)]},
        {"name": "000005.jpg", "train": True, "single": [1, 2],  # validation: rect 2 only
         "rects": [mpii_rect(_joints(3), BOX, (5, 5), 1), mpii_rect(_joints(4), BOX, (6, 6), 1)]},
        {"name": "000006.jpg", "train": True, "single": [1],  # single rect without annopoints
         "rects": [mpii_rect(None, BOX, (7, 7), 1)]},
        {"name": "000007.jpg", "train": True},  # no people at all
    ]
    write_mpii_mat(tmp_path / "mpii_human_pose_v1_u12_1.mat", images)
    (tmp_path / "images").mkdir()
    (tmp_path / "valid_images.txt").write_text("000003.jpg\n\n000005.jpg 2\n")
    return tmp_path


def test_mpii_mat_train_split(mpii):
    records = read_mpii(mpii, "train")
    assert [(r.image_path.name, r.center) for r in records] == [
        ("000001.jpg", (49.0, 59.0)), ("000001.jpg", (69.0, 79.0)), ("000002.jpg", (1.0, 1.0))]
    first, second = records[0], records[1]
    assert first.image_path == mpii / "images" / "000001.jpg"
    assert first.scale == 1.5 and first.head_size == pytest.approx(30.0)
    assert first.head_box == (10.0, 20.0, 40.0, 60.0)  # 0-based
    assert first.joints_annotated.tolist() == [j in (0, 8, 9) for j in range(16)]
    np.testing.assert_allclose(first.joints[[0, 8, 9]], [[4, 5], [8, 9], [6, 7]])  # 1 -> 0-based
    assert np.isnan(first.joints[~first.joints_annotated]).all()
    assert first.joints_occluded.tolist() == [j == 0 for j in range(16)]  # is_visible 0; '1'; []
    np.testing.assert_allclose(second.joints[3], [129.0, 214.0])
    assert second.joints.dtype == np.float32 and second.joints_annotated.all()


def test_mpii_mat_val_split_by_image_and_rect(mpii):
    records = read_mpii(mpii, "val")
    assert [(r.image_path.name, r.center) for r in records] == [
        ("000003.jpg", (2.0, 2.0)), ("000005.jpg", (5.0, 5.0))]
    np.testing.assert_allclose(records[1].joints[0], [103.0, 199.0])  # rect 2 = offset 4


def test_mpii_val_list_is_required_and_checked(mpii):
    (mpii / "valid_images.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valid_images.txt"):
        read_mpii(mpii, "train")
    bad = mpii / "val.txt"
    bad.write_text("000003.jpg\n000005.jpg two\n")
    with pytest.raises(DatasetError, match=r"val.txt:2:"):
        read_mpii(mpii, "val", val_list=bad)


def test_mpii_missing_images_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MPII: expected folder 'images' under"):
        read_mpii(tmp_path, "train")


def _json_entry(name, offset, head_box=None):
    joints = [[100 + 10 * j + offset, 200 + 5 * j] for j in range(16)]
    joints[4] = [-1, -1]
    entry = {"image": name, "center": [50.0, 60.0], "scale": 1.25, "joints": joints,
             "joints_vis": [0 if j == 4 else 1 for j in range(16)]}
    if head_box is not None:
        entry["head_box"] = head_box
    return entry


def test_mpii_json_with_head_box_key(tmp_path):
    (tmp_path / "images").mkdir()
    write_json(tmp_path / "annot" / "valid.json",
               [_json_entry("a.jpg", 0, list(BOX)), _json_entry("b.jpg", 1)])
    records = read_mpii(tmp_path, "val")
    assert [r.image_path.name for r in records] == ["a.jpg", "b.jpg"]
    a = records[0]
    assert a.center == (49.0, 59.0) and a.scale == 1.25
    np.testing.assert_allclose(a.joints[0], [99.0, 199.0])
    assert not a.joints_annotated[4] and np.isnan(a.joints[4]).all()
    assert a.head_size == pytest.approx(30.0) and a.joints_occluded is None
    assert records[1].head_size is None


def test_mpii_json_with_gt_valid_head_boxes(tmp_path):
    (tmp_path / "images").mkdir()
    path = write_json(tmp_path / "valid.json", [_json_entry("a.jpg", 0), _json_entry("b.jpg", 0)])
    boxes = np.zeros((2, 2, 2))
    boxes[:, :, 0] = [[11, 21], [41, 61]]  # [[x1, y1], [x2, y2]]
    boxes[:, :, 1] = [[0, 0], [3, 4]]
    scipy.io.savemat(str(tmp_path / "gt_valid.mat"), {"headboxes_src": boxes})
    records = read_mpii(tmp_path, "val", annotation_file=path,
                        head_boxes=tmp_path / "gt_valid.mat")
    assert [r.head_size for r in records] == pytest.approx([30.0, 3.0])
    with pytest.raises(DatasetError, match="headboxes_src"):
        write_json(path, [_json_entry("a.jpg", 0)])
        read_mpii(tmp_path, "val", annotation_file=path, head_boxes=tmp_path / "gt_valid.mat")


def test_mpii_json_malformed_entry(tmp_path):
    (tmp_path / "images").mkdir()
    entry = _json_entry("a.jpg", 0)
    del entry["center"]
    path = write_json(tmp_path / "train.json", [_json_entry("a.jpg", 0), entry])
    with pytest.raises(DatasetError, match="train.json: malformed entry 1"):
        read_mpii(tmp_path, "train", annotation_file=path)
