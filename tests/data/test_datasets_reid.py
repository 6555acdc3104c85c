"""Market-1501 and DukeMTMC-reID readers on tiny native-format folders."""

from __future__ import annotations

import numpy as np
import pytest
from native import write_attribute_mat, write_image, write_reid_folders

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES
from personkit.data.datasets import (
    DATASETS,
    DUKE_ATTRIBUTES,
    DatasetError,
    read_dataset,
    read_duke,
    read_market1501,
)

MARKET_FILES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg",
                           "0007_c2s3_070952_01.jpg", "0010_c6s4_002427_02.jpg"],
    "query": ["0001_c1s1_001051_00.jpg"],
    "bounding_box_test": ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg",
                          "0001_c2s1_000301_01.jpg", "0003_c5s1_000101_02.jpg"],
}
UP = [f"up{c}" for c in MARKET_ATTRIBUTES["upcolor"]]
DOWN = [f"down{c}" for c in MARKET_ATTRIBUTES["downcolor"]]
MARKET_TRAIN = {
    # female, adult, short hair, short sleeves, long lower, pants, backpack; red top, blue bottom
    "0002": {"gender": 2, "age": 3, "up": 2, "clothes": 2, "backpack": 2, "upred": 2,
             "downblue": 2},
    "0007": {"age": 1, "downbrown": 2},  # no upper colour labelled
    "0010": {"age": 4, "hat": 2, "upgreen": 2, "downblack": 2},
}
MARKET_TEST = {"0001": {"age": 2, "upwhite": 2, "downpink": 2}, "0003": {"age": 2}}
FIELDS = ["gender", "age", "hair", "up", "down", "clothes", "hat", "backpack", "bag",
          "handbag", *UP, *DOWN]


@pytest.fixture
def market(tmp_path):
    root = write_reid_folders(tmp_path / "Market-1501-v15.09.15", MARKET_FILES)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0")  # real folders have one
    write_attribute_mat(root / "market_attribute.mat", "market_attribute", MARKET_TRAIN,
                        MARKET_TEST, ["image_index", *FIELDS], [*reversed(FIELDS), "image_index"])
    return tmp_path


def _expected(gender, age, hair, up, down, clothes, backpack, handbag, bag, hat, upc, downc):
    return [gender, age, hair, up, down, clothes, backpack, handbag, bag, hat, upc, downc]


def test_market_train_pids_camids_and_attributes(market):
    records = read_market1501(market, "train")  # root may be the parent of the dataset folder
    assert [r.image_path.name for r in records] == MARKET_FILES["bounding_box_train"]
    assert [r.pid for r in records] == [2, 2, 7, 10]
    assert [r.camid for r in records] == [0, 2, 1, 5]  # 0-based cameras
    np.testing.assert_array_equal(records[0].attributes, _expected(1, 2, 0, 1, 0, 1, 1, 0, 0, 0,
                                                                   2, 6))
    assert records[1].attributes is records[0].attributes  # per-identity labels, shared
    np.testing.assert_array_equal(records[2].attributes,
                                  _expected(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, IGNORE_INDEX, 8))
    np.testing.assert_array_equal(records[3].attributes, _expected(0, 3, 0, 0, 0, 0, 0, 0, 0, 1,
                                                                   7, 0))
    assert records[0].attributes.dtype == np.int64


def test_market_gallery_keeps_junk_and_distractors(market):
    records = read_market1501(market / "Market-1501-v15.09.15", "gallery")
    assert [r.pid for r in records] == [-1, 0, 1, 3]
    assert all((r.attributes == IGNORE_INDEX).all() for r in records[:2])
    assert records[2].attributes[10] == 1 and records[2].attributes[11] == 2  # white, pink
    query = read_market1501(market, "query", attributes=False)
    assert [(r.pid, r.camid, r.attributes) for r in query] == [(1, 0, None)]


def test_market_missing_folder_names_the_path(tmp_path):
    write_reid_folders(tmp_path, {"query": ["0001_c1s1_001051_00.jpg"]})
    with pytest.raises(FileNotFoundError, match=r"Market-1501: expected folder "
                                                r"'bounding_box_train' under .*"):
        read_market1501(tmp_path, "train", attributes=False)


def test_market_missing_attribute_file_and_bad_split(tmp_path):
    write_reid_folders(tmp_path, {"query": ["0001_c1s1_001051_00.jpg"]})
    with pytest.raises(FileNotFoundError, match="market_attribute.mat"):
        read_market1501(tmp_path, "query")
    with pytest.raises(ValueError, match="gallery"):
        read_market1501(tmp_path, "test", attributes=False)


def test_market_malformed_file_name_names_the_file(tmp_path):
    write_reid_folders(tmp_path, {"query": ["0001_c1s1_001051_00.jpg", "0001_c1_f0001.jpg"]})
    with pytest.raises(DatasetError, match="0001_c1_f0001.jpg"):
        read_market1501(tmp_path, "query", attributes=False)


def test_attribute_file_missing_field_is_an_error(tmp_path):
    write_reid_folders(tmp_path, {"query": ["0001_c1s1_001051_00.jpg"]})
    fields = [f for f in FIELDS if f != "hat"]
    write_attribute_mat(tmp_path / "market_attribute.mat", "market_attribute", MARKET_TRAIN,
                        MARKET_TEST, ["image_index", *FIELDS], ["image_index", *fields])
    with pytest.raises(DatasetError, match="test.*'hat'"):
        read_market1501(tmp_path, "query")


DUKE_UP = [f"up{c}" for c in DUKE_ATTRIBUTES["upcolor"]]
DUKE_DOWN = [f"down{c}" for c in DUKE_ATTRIBUTES["downcolor"]]
DUKE_FIELDS = ["backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top",
               *DUKE_DOWN, *DUKE_UP]


@pytest.mark.parametrize("yes", [2, 1])
def test_duke_reader_and_colour_encoding(tmp_path, yes):
    no = 3 - yes
    root = write_reid_folders(tmp_path / "DukeMTMC-reID", {
        "bounding_box_train": ["0005_c2_f0046985.jpg", "0370_c8_f0001234.jpg"]})

    def ident(**kw):
        row = {f: no for f in DUKE_UP + DUKE_DOWN}
        row.update({f: yes for f in kw.pop("colours")})
        return {**row, **kw}

    train = {"0005": ident(gender=2, top=2, shoes=1, colours=["upbrown", "downred"]),
             "0370": ident(top=0, boots=2, colours=["upblack", "downgray"]),
             "0371": ident(colours=["upwhite", "downgray"])}
    write_attribute_mat(root / "duke_attribute.mat", "duke_attribute", train,
                        {"0001": ident(colours=["upred", "downblue"])},
                        ["image_index", *DUKE_FIELDS], [*reversed(DUKE_FIELDS), "image_index"])
    records = read_duke(tmp_path, "train")
    assert [(r.pid, r.camid) for r in records] == [(5, 1), (370, 7)]
    # gender, top, boots, hat, backpack, bag, handbag, shoes, upcolor, downcolor
    np.testing.assert_array_equal(records[0].attributes, [1, 1, 0, 0, 0, 0, 0, 0, 7, 2])
    np.testing.assert_array_equal(records[1].attributes,
                                  [0, IGNORE_INDEX, 1, 0, 0, 0, 0, 0, 0, 3])


def test_dataset_table(market):
    """One spec per dataset type: reader, transform preset, attributes, evaluation protocol."""
    assert set(DATASETS) == {"market1501", "duke", "mpii", "lip", "market_auto"}
    assert DATASETS["duke"].attributes == DUKE_ATTRIBUTES
    assert {k: v.protocol for k, v in DATASETS.items()} == {
        "market1501": "reid", "duke": "reid", "mpii": "mpii", "lip": "lip", "market_auto": "mpii"}
    assert DATASETS["mpii"].transform(True, (64, 64)).output_size == (64, 64)
    assert len(read_dataset("market1501", market, "query", attributes=False)) == 1
    with pytest.raises(ValueError, match=r"unknown dataset 'cuhk03'.*'duke'.*'market1501'"):
        read_dataset("cuhk03", market, "train")


def test_write_image_helper_roundtrip(tmp_path):
    import cv2
    path = write_image(tmp_path / "a.png", 5, 7)
    assert cv2.imread(str(path)).shape == (5, 7, 3)
