"""Market-1501 automatic annotations: writer and reader round trip, confidence threshold."""

from __future__ import annotations

import numpy as np
import pytest
from native import write_reid_folders

from personkit.data.datasets import AutoAnnotation, DatasetError, read_market_auto
from personkit.data.datasets.market_auto import POSE_HEADER, write_market_auto
from personkit.data.io import read_mask

NAMES = ["0002_c1s1_000451_03.jpg", "0007_c2s3_070952_01.jpg", "0010_c6s4_002427_02.jpg"]


@pytest.fixture
def market(tmp_path):
    root = write_reid_folders(tmp_path / "Market-1501-v15.09.15", {"bounding_box_train": NAMES})
    joints = np.stack([np.arange(16, dtype=float), 2 * np.arange(16, dtype=float)], 1)
    joints[5] = np.nan  # no prediction
    conf = np.linspace(0.0, 1.0, 16)
    parts = np.zeros((32, 16), dtype=np.uint8)
    parts[4:8, 2:6] = 13
    n = write_market_auto(root / "auto_annotations", [
        AutoAnnotation(f"bounding_box_train/{NAMES[0]}", joints, conf, parts),
        AutoAnnotation(f"bounding_box_train/{NAMES[1]}", joints + 1.0),  # confidence 1, no mask
    ])
    assert n == 2
    return root


def test_auto_annotations_round_trip(market):
    records = read_market_auto(market, "train", attributes=False)
    assert [r.pid for r in records] == [2, 7, 10]
    first, second, third = records
    np.testing.assert_allclose(first.joints[3], [3.0, 6.0])
    assert first.joints_annotated.tolist() == [j != 5 for j in range(16)]
    assert np.isnan(first.joints[5]).all()
    assert first.mask_path == market / "auto_annotations" / "parts" / "bounding_box_train" / (
        NAMES[0] + ".png")
    assert (read_mask(first.mask_path)[4:8, 2:6] == 13).all()
    assert second.mask_path is None and second.joints_annotated.sum() == 15
    assert third.joints is None and third.mask_path is None  # not annotated


def test_auto_annotations_confidence_threshold(market):
    records = read_market_auto(market.parent, "train", min_confidence=0.5, attributes=False)
    conf = np.linspace(0.0, 1.0, 16)
    assert records[0].joints_annotated.tolist() == [c >= 0.5 and j != 5
                                                    for j, c in enumerate(conf)]
    assert np.isnan(records[0].joints[0]).all()
    assert records[1].joints_annotated.sum() == 15


def test_auto_pose_csv_header(market):
    header = (market / "auto_annotations" / "pose.csv").read_text().splitlines()[0]
    assert header.split(",") == list(POSE_HEADER)
    assert header.startswith("image,x0,y0,c0,x1") and header.endswith("x15,y15,c15")


def test_auto_annotations_malformed_row(market):
    pose = market / "auto_annotations" / "pose.csv"
    pose.write_text(pose.read_text() + "bounding_box_train/x.jpg,1,2\n")
    with pytest.raises(DatasetError, match=r"pose.csv:4: expected 49 columns, got 3"):
        read_market_auto(market, "train", attributes=False)


def test_auto_annotations_missing_folder(tmp_path):
    write_reid_folders(tmp_path, {"bounding_box_train": NAMES})
    with pytest.raises(FileNotFoundError, match="auto_annotations"):
        read_market_auto(tmp_path, "train", attributes=False)


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        write_market_auto(tmp_path, [AutoAnnotation("x.jpg", np.zeros((16, 2)))])
    with pytest.raises(ValueError, match="uint8"):
        write_market_auto(tmp_path, [AutoAnnotation("a/x.jpg", parts=np.zeros((4, 4)))])
