"""PersonDataset: sample contract, pid relabelling, bad-image policy and reproducibility."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from native import lip_pose_line, write_attribute_mat, write_lip, write_reid_folders

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES, SEG_IGNORE
from personkit.data.dataset import PersonDataset
from personkit.data.datasets import read_lip, read_market1501
from personkit.data.io import BadImageError
from personkit.data.records import PersonRecord
from personkit.data.transforms import lip_transform, reid_transform

TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0007_c2s3_070952_01.jpg",
         "0010_c6s4_002427_02.jpg"]


@pytest.fixture
def market(tmp_path):
    root = write_reid_folders(tmp_path, {"bounding_box_train": TRAIN})
    write_attribute_mat(root / "market_attribute.mat", "market_attribute",
                        {"0002": {"upred": 2}, "0007": {}}, {}, ["image_index", "upred"] + [
                            n for n in _fields() if n != "upred"], ["image_index", *_fields()])
    return read_market1501(root, "train")


def _fields() -> list[str]:
    plain = [n for n in MARKET_ATTRIBUTES if not n.endswith("color")]
    return plain + [f"up{c}" for c in MARKET_ATTRIBUTES["upcolor"]] + [
        f"down{c}" for c in MARKET_ATTRIBUTES["downcolor"]]


@pytest.fixture
def lip(tmp_path):
    masks = {}
    for k in range(3):
        m = np.zeros((24, 16), dtype=np.uint8)
        m[4:10, 2:6], m[12:, :] = 14, 9
        masks[f"{k:03d}"] = m
    joints = [(3.0 + j % 8, 2.0 + j, 0.0) for j in range(16)]
    joints[2] = None
    lines = [lip_pose_line(f"{k}.jpg", joints) for k in masks]
    write_lip(tmp_path, "train", "flat", masks, lines)
    return read_lip(tmp_path, "train")


def test_reid_sample_contract_and_relabelling(market):
    ds = PersonDataset(market, reid_transform(True, (32, 16)), tasks=("reid", "attributes"),
                       pid_relabel=True, attribute_names=tuple(MARKET_ATTRIBUTES))
    assert ds.num_ids == 3 and ds.pids.tolist() == [0, 0, 1, 2]
    assert ds.pid_map == {2: 0, 7: 1, 10: 2}
    s = ds[2]
    assert set(s) == {"image", "index", "affine", "pid", "camid", "attributes"}
    assert s["image"].shape == (3, 32, 16) and s["image"].dtype == torch.float32
    assert s["affine"].shape == (2, 3) and s["affine"].dtype == torch.float32
    assert s["index"].item() == 2 and s["pid"].item() == 1 and s["camid"].item() == 1
    assert s["attributes"].dtype == torch.int64 and s["attributes"].shape == (12,)
    assert ds[0]["attributes"][10].item() == 2  # red
    assert (ds[3]["attributes"] == IGNORE_INDEX).all()  # identity missing from the file
    assert not PersonDataset(market, reid_transform(False), ("reid",)).pids.tolist() == [0, 0, 1,
                                                                                         2]


@pytest.mark.parametrize("index", [0, 1])  # with seed 0: not flipped, flipped
def test_pose_and_parts_sample_contract(lip, index):
    ds = PersonDataset(lip, lip_transform(True, (32, 24)), tasks=("pose", "segmentation"))
    s = ds[index]
    assert set(s) == {"image", "index", "affine", "joints", "joints_valid", "parts"}
    assert s["joints"].shape == (16, 2) and s["joints"].dtype == torch.float32
    flipped = bool(s["affine"][0, 0] < 0)
    assert flipped == (index == 1)
    missing = 3 if flipped else 2  # r-hip is unannotated; a flip moves it to the l-hip slot
    assert s["joints_valid"].dtype == torch.bool and not s["joints_valid"][missing]
    uv = s["joints"][s["joints_valid"]]
    assert len(uv) > 10 and ((uv >= 0) & (uv <= 1)).all()
    assert s["parts"].shape == (32, 24) and s["parts"].dtype == torch.int64
    assert set(s["parts"].unique().tolist()) <= {0, 9, 14, 15}
    # the normalised joints are the affine image of the record's joints, flip-swapped
    a = s["affine"].numpy().astype(np.float64)
    xy = lip[index].joints @ a[:, :2].T + a[:, 2]
    if flipped:
        xy = xy[[5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]]
    valid = s["joints_valid"].numpy()
    np.testing.assert_allclose(s["joints"].numpy()[valid], ((xy + 0.5) / [24, 32])[valid],
                               atol=1e-5)


def test_merge_parts_and_missing_labels(lip):
    records = [lip[0], PersonRecord(image_path=lip[1].image_path)]
    ds = PersonDataset(records, lip_transform(False, (24, 16)), tasks=("pose", "segmentation"),
                       merge_parts=True)
    assert set(ds[0]["parts"].unique().tolist()) == {0, 2, 3}  # arm -> upper, pants -> lower
    s = ds[1]  # no mask and no joints: unknown labels
    assert (s["parts"] == SEG_IGNORE).all() and not s["joints_valid"].any()
    assert (s["joints"] == 0).all()


def test_tasks_without_labels_are_rejected(market, lip):
    with pytest.raises(ValueError, match="'joints'"):
        PersonDataset(market, reid_transform(True), tasks=("pose",))
    with pytest.raises(ValueError, match="unknown tasks"):
        PersonDataset(market, reid_transform(True), tasks=("depth",))
    with pytest.raises(ValueError, match="'pid'"):
        PersonDataset(lip, lip_transform(True), tasks=("reid",))
    with pytest.raises(ValueError, match="attribute_names has 2"):
        PersonDataset(market, reid_transform(True), ("attributes",), attribute_names=("a", "b"))


def test_bad_image_skip_and_raise(market):
    market[1].image_path.write_bytes(b"corrupt")
    ds = PersonDataset(market, reid_transform(False, (16, 8)), ("reid",), on_bad_image="skip")
    with pytest.warns(RuntimeWarning, match="0002_c3s1_000551_01.jpg"):
        s = ds[1]
    assert s["index"].item() == 2 and ds.num_bad_images == 1  # the next valid record
    assert ds[1]["index"].item() == 2 and ds.num_bad_images == 1
    strict = PersonDataset(market, reid_transform(False, (16, 8)), ("reid",))
    with pytest.raises(BadImageError, match="0002_c3s1_000551_01.jpg"):
        strict[1]
    with pytest.raises(ValueError, match="on_bad_image"):
        PersonDataset(market, reid_transform(False), ("reid",), on_bad_image="ignore")


def test_augmentation_is_reproducible_per_epoch_and_picklable(lip):
    ds = PersonDataset(lip, lip_transform(True, (32, 24)), ("segmentation",), seed=5)
    first = ds[0]["affine"]
    assert torch.equal(first, ds[0]["affine"])
    ds.set_epoch(1)
    second = ds[0]["affine"]
    assert not torch.equal(first, second)
    ds.set_epoch(0)
    assert torch.equal(ds[(1, 0)]["affine"], second)  # (epoch, index) overrides set_epoch
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[0]["image"], ds[0]["image"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 32, 24) and batch["parts"].shape == (3, 32, 24)
