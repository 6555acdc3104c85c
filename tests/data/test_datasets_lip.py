"""LIP reader on nested and flattened layouts, and its pose-CSV error reporting."""

from __future__ import annotations

import numpy as np
import pytest
from native import lip_paths, lip_pose_line, write_lip

from personkit.data.datasets import DatasetError, read_lip
from personkit.data.io import read_mask


def _pose_lines() -> list[str]:
    a = [(10.0 + j, 20.0 + 2 * j, 1.0 if j == 3 else 0.0) for j in range(16)]
    b = list(a)
    b[0], b[9] = None, None  # r-ankle and head top missing
    return [lip_pose_line("100_a.jpg", a), lip_pose_line("200_b.jpg", b)]


def _masks() -> dict[str, np.ndarray]:
    m = np.zeros((12, 8), dtype=np.uint8)
    m[2:5, 1:3] = 14  # left arm
    m[6:, :] = 255
    return {"200_b": m, "100_a": np.full((10, 6), 5, dtype=np.uint8)}


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_lip_records(tmp_path, layout):
    paths = write_lip(tmp_path, "val", layout, _masks(), _pose_lines())
    records = read_lip(tmp_path, "val")
    assert [r.image_path.name for r in records] == ["100_a.jpg", "200_b.jpg"]
    assert records[0].image_path == paths["images"] / "100_a.jpg"
    assert records[1].mask_path == paths["masks"] / "200_b.png"
    np.testing.assert_array_equal(read_mask(records[1].mask_path), _masks()["200_b"])
    a, b = records
    np.testing.assert_allclose(a.joints[3], [13.0, 26.0])
    assert a.joints_annotated.all() and a.joints_occluded.tolist() == [j == 3 for j in range(16)]
    assert a.head_size == pytest.approx(np.hypot(1.0, 2.0))  # |head top (9) - neck (8)|
    assert b.joints_annotated.tolist() == [j not in (0, 9) for j in range(16)]
    assert np.isnan(b.joints[[0, 9]]).all() and not b.joints_occluded[0]
    assert np.isnan(b.head_size)


def test_lip_without_id_list_and_without_pose(tmp_path):
    paths = write_lip(tmp_path, "train", "flat", _masks())
    paths["ids"].unlink()
    records = read_lip(tmp_path, "train", pose=False)
    assert [r.image_path.stem for r in records] == ["100_a", "200_b"]
    assert records[0].joints is None and records[0].head_size is None
    with pytest.raises(FileNotFoundError, match="lip_train_set.csv"):
        read_lip(tmp_path, "train")


def test_lip_image_missing_from_pose_csv_has_no_joints(tmp_path):
    write_lip(tmp_path, "val", "nested", _masks(), _pose_lines()[:1])
    records = read_lip(tmp_path, "val")
    assert records[0].joints is not None and records[1].joints is None


def test_lip_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"LIP: expected the image folder "
                                                r"'train_images'.*TrainVal_images"):
        read_lip(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        read_lip(tmp_path, "test")


@pytest.mark.parametrize("bad_line, message", [
    ("300_c.jpg," + ",".join(["1"] * 47), r"lip_val_set.csv:3: expected the image name and "
                                          r"48 values, got 47"),
    ("300_c.jpg," + ",".join(["1"] * 47 + ["x"]), r"lip_val_set.csv:3: non-numeric"),
])
def test_lip_malformed_pose_row_names_file_and_line(tmp_path, bad_line, message):
    write_lip(tmp_path, "val", "nested", _masks(), [*_pose_lines(), bad_line])
    with pytest.raises(DatasetError, match=message):
        read_lip(tmp_path, "val")


def test_lip_paths_helper_rejects_unknown_layout(tmp_path):
    with pytest.raises(ValueError):
        lip_paths(tmp_path, "val", "zip")
