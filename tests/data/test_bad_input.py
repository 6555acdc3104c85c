"""Adversarial inputs (issue 14): every bad file is a clear error of a known type naming the
file (and line), and input that is left out is counted and reported.

``ERRORS`` is the table of bad files: each row writes one input in its native format under
``tmp_path``, reads it the way personkit does, and names the expected error type and the texts
the message must contain. ``COUNTED`` rows are inputs that are accepted or left out, with the
count that must be reported. Evaluation, training and ``predict`` cases follow the tables.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from native import (
    lip_pose_line,
    mpii_rect,
    write_image,
    write_json,
    write_lip,
    write_mpii_mat,
    write_reid_folders,
)

from personkit.config import (
    BackboneConfig,
    ConfigError,
    DatasetConfig,
    ModelConfig,
    load_config,
)
from personkit.data.dataset import PersonDataset
from personkit.data.datasets import DatasetError, read_lip, read_market1501, read_mpii
from personkit.data.datasets.market_auto import POSE_HEADER, read_market_auto
from personkit.data.transforms import lip_transform, reid_transform
from personkit.inference.sources import open_input, read_boxes

LATIN1 = "caf\xe9".encode("latin-1")  # not UTF-8
BOX = (11.0, 21.0, 41.0, 61.0)


# --------------------------------------------------------------------------- writers


def _joints() -> list[list[float]]:
    return [[100.0 + 10 * j, 200.0 + 5 * j] for j in range(16)]


def _mpii_json(tmp: Path, **changes: Any) -> Path:
    entry = {"image": "000001.jpg", "center": [120.0, 240.0], "scale": 1.5,
             "joints": _joints(), "joints_vis": [1] * 16, **changes}
    (tmp / "images").mkdir(exist_ok=True)
    return write_json(tmp / "annot" / "valid.json", [entry])


def _mpii_raw(tmp: Path, data: bytes) -> Any:
    (tmp / "images").mkdir()
    return read_mpii(tmp, "val", _bytes_file(tmp / "annot" / "valid.json", data))


def _mpii_mat(tmp: Path, scale: float = 1.0, objpos=(50.0, 60.0),
              val_list: bytes = b"000009.jpg\n") -> Path:
    joints = {j: (100 + j, 200 + j, 1) for j in range(16)}
    write_mpii_mat(tmp / "mpii_human_pose_v1_u12_1.mat", [
        {"name": "000001.jpg", "train": True, "single": [1],
         "rects": [mpii_rect(joints, BOX, objpos, scale)]}])
    (tmp / "images").mkdir(exist_ok=True)
    (tmp / "valid_images.txt").write_bytes(val_list)
    return tmp


def _lip(tmp: Path, pose_lines: list[str] | None = None) -> dict[str, Path]:
    masks = {"100_a": np.full((12, 8), 5, np.uint8), "200_b": np.zeros((12, 8), np.uint8)}
    lines = pose_lines if pose_lines is not None else [
        lip_pose_line(f"{k}.jpg", [(1.0 + j, 2.0 + j, 0.0) for j in range(16)]) for k in masks]
    return write_lip(tmp, "val", "flat", masks, lines)


def _lip_raw(tmp: Path, which: str, data: bytes) -> Any:
    _lip(tmp)[which].write_bytes(data)
    return read_lip(tmp, "val")


def _mot(tmp: Path, det: bytes | str, seqinfo: bytes | str | None = None) -> Path:
    seq = tmp / "MOT17-02"
    write_image(seq / "img1" / "000001.jpg", 40, 60)
    write_image(seq / "img1" / "000002.jpg", 40, 60)
    (seq / "det").mkdir(parents=True)
    data = det.encode() if isinstance(det, str) else det
    (seq / "det" / "det.txt").write_bytes(data)
    if seqinfo is not None:
        (seq / "seqinfo.ini").write_bytes(seqinfo.encode() if isinstance(seqinfo, str)
                                          else seqinfo)
    return seq


def _market_auto(tmp: Path, pose_csv: bytes) -> Path:
    root = write_reid_folders(tmp, {"bounding_box_train": ["0002_c1s1_000451_03.jpg"]})
    (root / "auto_annotations" / "parts").mkdir(parents=True)
    (root / "auto_annotations" / "pose.csv").write_bytes(pose_csv)
    return root


def _read_records_lip(tmp: Path) -> Any:
    from personkit.engine.datasets import read_records

    paths = _lip(tmp)
    paths["ids"].write_bytes(b"100_a\n" + LATIN1 + b"\n")
    return read_records(DatasetConfig(name="lipval", type="lip", root=str(tmp), split="val"))


def _lip_training_label(tmp: Path, value: int, shape=(12, 8)) -> Any:
    paths = _lip(tmp)
    mask = np.zeros(shape, np.uint8)
    mask[0, 0] = value
    import cv2

    cv2.imencode(".png", mask)[1].tofile(paths["masks"] / "100_a.png")
    ds = PersonDataset(read_lip(tmp, "val"), lip_transform(True, (16, 8)), ("segmentation",))
    return ds[0]


def _bytes_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- the table

Row = tuple[str, Callable[[Path], Any], type[BaseException], tuple[str, ...]]
ERRORS: list[Row] = [
    # MPII JSON (HRNet/mmpose form)
    ("mpii json scale 0", lambda t: read_mpii(t, "val", _mpii_json(t, scale=0)),
     DatasetError, ("valid.json", "entry 0", "000001.jpg", "scale")),
    ("mpii json scale negative", lambda t: read_mpii(t, "val", _mpii_json(t, scale=-2.0)),
     DatasetError, ("valid.json", "entry 0", "scale", "-2.0")),
    ("mpii json scale NaN", lambda t: read_mpii(t, "val", _mpii_json(t, scale=math.nan)),
     DatasetError, ("valid.json", "entry 0", "scale", "nan")),
    ("mpii json centre NaN", lambda t: read_mpii(t, "val", _mpii_json(t, center=[math.nan, 3])),
     DatasetError, ("valid.json", "entry 0", "centre")),
    ("mpii json centre negative", lambda t: read_mpii(t, "val", _mpii_json(t, center=[-1, -1])),
     DatasetError, ("valid.json", "entry 0", "centre", "negative")),
    ("mpii json not a list", lambda t: _mpii_raw(t, b'{"image": "a.jpg"}'),
     DatasetError, ("valid.json", "list")),
    ("mpii json syntax", lambda t: _mpii_raw(t, b"[\n{,\n"),
     DatasetError, ("valid.json:2", "not valid JSON")),
    ("mpii json not UTF-8", lambda t: _mpii_raw(t, b'[\n"' + LATIN1 + b'"]'),
     DatasetError, ("valid.json:2", "not UTF-8")),
    # MPII official .mat
    ("mpii mat scale 0", lambda t: read_mpii(_mpii_mat(t, scale=0.0), "train"),
     DatasetError, ("mpii_human_pose_v1_u12_1.mat", "000001.jpg rect 1", "scale")),
    ("mpii mat scale negative", lambda t: read_mpii(_mpii_mat(t, scale=-1.0), "train"),
     DatasetError, ("mpii_human_pose_v1_u12_1.mat", "000001.jpg rect 1", "scale")),
    ("mpii mat centre negative", lambda t: read_mpii(_mpii_mat(t, objpos=(-5.0, 3.0)), "train"),
     DatasetError, ("mpii_human_pose_v1_u12_1.mat", "000001.jpg rect 1", "centre")),
    ("mpii val list not UTF-8", lambda t: read_mpii(_mpii_mat(
        t, val_list=b"000002.jpg\n" + LATIN1 + b".jpg\n"), "train"),
     DatasetError, ("valid_images.txt:2", "not UTF-8")),
    # LIP
    ("lip id list not UTF-8", lambda t: _lip_raw(t, "ids", b"100_a\n" + LATIN1 + b"\n"),
     DatasetError, ("val_id.txt:2", "not UTF-8")),
    ("lip pose csv not UTF-8", lambda t: _lip_raw(t, "pose", (lip_pose_line(
        "100_a.jpg", [None] * 16) + "\n").encode() + LATIN1 + b",1\n"),
     DatasetError, ("lip_val_set.csv:2", "not UTF-8")),
    ("lip training label 100", lambda t: _lip_training_label(t, 100),
     DatasetError, ("100_a.png", "[100]", "0..19")),
    ("lip training label of another size", lambda t: _lip_training_label(t, 1, (10, 8)),
     DatasetError, ("100_a.png", "100_a.jpg", "8x10", "8x12")),
    # read_records wraps reader errors of every type (a UnicodeDecodeError crashed it)
    ("dataset entry not UTF-8", _read_records_lip,
     DatasetError, ("dataset 'lipval'", "val_id.txt:2", "not UTF-8")),
    # Market-1501
    ("market pid 12-3", lambda t: read_market1501(write_reid_folders(t, {
        "query": ["0001_c1s1_000001_00.jpg", "12-3_c1s1_000001_00.jpg"]}), "query",
        attributes=False), DatasetError, ("12-3_c1s1_000001_00.jpg", "malformed file name")),
    ("market camera 9", lambda t: read_market1501(write_reid_folders(t, {
        "query": ["0001_c9s1_000001_00.jpg"]}), "query", attributes=False),
     DatasetError, ("0001_c9s1_000001_00.jpg", "camera 9")),
    ("market_auto pose.csv not UTF-8", lambda t: read_market_auto(_market_auto(
        t, (",".join(POSE_HEADER) + "\n").encode() + LATIN1 + b"\n"), attributes=False),
     DatasetError, ("pose.csv:2", "not UTF-8")),
    # MOT sequences and boxes files (personkit predict)
    ("mot seqinfo malformed", lambda t: open_input(_mot(t, "1,-1,1,1,5,5,0.9\n",
                                                        "[Sequence]\nname MOT17\n")),
     ValueError, ("seqinfo.ini", "malformed")),
    ("mot seqinfo imDir escapes", lambda t: open_input(_mot(
        t, "1,-1,1,1,5,5,0.9\n", "[Sequence]\nimDir=../../etc\n")),
     ValueError, ("seqinfo.ini", "imDir")),
    ("mot seqinfo not UTF-8", lambda t: open_input(_mot(
        t, "1,-1,1,1,5,5,0.9\n", b"[Sequence]\nname=" + LATIN1)),
     ValueError, ("seqinfo.ini:2", "not UTF-8")),
    ("mot det.txt not UTF-8", lambda t: open_input(_mot(
        t, b"1,-1,1,1,5,5,0.9\n1,-1," + LATIN1 + b"\n")), ValueError, ("det.txt:2", "UTF-8")),
    ("mot frame 1.5", lambda t: open_input(_mot(t, "1,-1,1,1,5,5,0.9\n1.5,-1,1,1,5,5,0.9\n")),
     ValueError, ("det.txt:2", "frame number", "1.5")),
    ("mot frame 0", lambda t: open_input(_mot(t, "0,-1,1,1,5,5,0.9\n")),
     ValueError, ("det.txt:1", "frame number")),
    ("boxes json syntax", lambda t: read_boxes(_bytes_file(t / "b.json", b"[[1,2,3,4],\n[5,")),
     ValueError, ("b.json:2", "not valid JSON")),
    ("boxes txt not UTF-8", lambda t: read_boxes(_bytes_file(t / "b.txt", b"1,2,3,4 # " + LATIN1)),
     ValueError, ("b.txt:1", "not UTF-8")),
    # config files
    ("config not UTF-8", lambda t: load_config(_bytes_file(t / "c.yaml", b"train:\n  lr: "
                                                           b"1e-3 # " + LATIN1 + b"\n")),
     ConfigError, ("c.yaml",)),
]


@pytest.mark.parametrize("name, make, error, texts", ERRORS, ids=[r[0] for r in ERRORS])
def test_bad_input_is_a_clear_error(tmp_path, name, make, error, texts):
    with pytest.raises(error) as info:
        make(tmp_path)
    message = str(info.value)
    missing = [t for t in texts if t not in message]
    assert not missing, f"{name}: message lacks {missing}: {message}"


def _count_upper_case_jpg(tmp: Path) -> int:
    root = write_reid_folders(tmp, {"query": ["0001_c1s1_000001_00.jpg"]})
    write_image(root / "query" / "0002_c2s1_000001_00.JPG")
    (root / "query" / "Thumbs.db").write_bytes(b"x")
    return len(read_market1501(root, "query", attributes=False))


def _count_zero_head(tmp: Path) -> int:
    from personkit.metrics.pose import pckh

    gt = np.tile(np.arange(32, dtype=float).reshape(1, 16, 2), (3, 1, 1))
    scores = pckh(gt, gt, np.ones((3, 16), bool), [10.0, 0.0, math.nan])
    assert scores["Mean"] == 1.0 and scores["num_skipped"] == 2
    return scores["num_zero_head_size"]


def _count_mpii_zero_head_box(tmp: Path) -> int:
    box = [50.0, 60.0, 50.0, 60.0]  # zero area: head size 0
    records = read_mpii(tmp, "val", _mpii_json(tmp, head_box=box))
    return sum(r.head_size == 0 for r in records)


COUNTED: list[tuple[str, Callable[[Path], int], int]] = [
    ("market .JPG accepted", _count_upper_case_jpg, 2),
    ("zero head size counted apart", _count_zero_head, 1),
    ("mpii zero-area head box gives head size 0", _count_mpii_zero_head_box, 1),
]


@pytest.mark.parametrize("name, count, expected", COUNTED, ids=[r[0] for r in COUNTED])
def test_left_out_input_is_counted(tmp_path, name, count, expected):
    assert count(tmp_path) == expected


# --------------------------------------------------------------------------- evaluation

TINY = ModelConfig(backbone=BackboneConfig(name="resnet18", norm="group"),
                   heads=("reid", "segmentation"), num_ids=4, seg_classes=20, fpn_channels=16,
                   seg_channels=8, input_size=(32, 16))


@pytest.fixture(scope="module")
def tiny_model():
    from personkit.models.build import build_model

    torch.manual_seed(0)
    return build_model(TINY).eval()


def _reid_sets(tmp: Path):
    query = ["0001_c1s1_000001_00.jpg", "0002_c1s1_000001_00.jpg", "0003_c1s1_000001_00.jpg"]
    gallery = [f"{p:04d}_c{c}s1_00000{c}_01.jpg" for p in (1, 2, 3) for c in (2, 3)]
    root = write_reid_folders(tmp, {"query": query, "bounding_box_test": gallery})
    return root, read_market1501(root, "query", False), read_market1501(root, "gallery", False)


def _reid(model, query, gallery, policy="raise"):
    """ReID scores with one image per batch: a dropped image then changes no other image's
    batch (batch shapes pick kernels), so the skip and the left-out runs compute the same
    embeddings bit for bit and their scores are compared exactly."""
    from personkit.engine.evaluate import evaluate_reid_attributes

    t = reid_transform(False, (32, 16))
    return evaluate_reid_attributes(
        model, PersonDataset(query, t, on_bad_image=policy),
        PersonDataset(gallery, t, on_bad_image=policy), query, gallery, flip_tta=False,
        batch_size=1, progress=False)["reid"]


def test_eval_skip_drops_a_bad_query_instead_of_scoring_a_neighbour_twice(tmp_path, tiny_model,
                                                                         capsys):
    root, query, gallery = _reid_sets(tmp_path)
    query[1].image_path.write_bytes(b"not a jpeg")
    with pytest.warns(RuntimeWarning, match="0002_c1s1"):
        skipped = _reid(tiny_model, query, gallery, "skip")
    expected = _reid(tiny_model, [query[0], query[2]], gallery)  # the bad query left out
    assert skipped["num_bad_images"] == skipped["num_bad_query"] == 1
    assert expected["num_bad_images"] == 0
    for key in ("mAP", "rank1", "mAP_official"):
        assert skipped[key] == expected[key], key
    assert "1 undecodable image(s) skipped" in capsys.readouterr().err


def test_eval_skip_drops_a_bad_gallery_image(tmp_path, tiny_model):
    root, query, gallery = _reid_sets(tmp_path)
    gallery[3].image_path.write_bytes(b"")
    with pytest.warns(RuntimeWarning):
        skipped = _reid(tiny_model, query, gallery, "skip")
    expected = _reid(tiny_model, query, gallery[:3] + gallery[4:])
    assert skipped["num_bad_gallery"] == 1 and skipped["num_bad_query"] == 0
    assert skipped["mAP"] == expected["mAP"]


@pytest.mark.parametrize("shape, value, texts", [
    ((10, 8), 1, ("100_a.png", "8x10", "100_a.jpg", "8x12")),  # training rejects it too
    ((12, 8), 100, ("100_a.png", "[100]")),
])
def test_eval_checks_part_labels_like_training(tmp_path, tiny_model, shape, value, texts):
    import cv2

    from personkit.engine.evaluate import evaluate_parts

    paths = _lip(tmp_path)
    mask = np.full(shape, value, np.uint8)
    cv2.imencode(".png", mask)[1].tofile(paths["masks"] / "100_a.png")
    records = read_lip(tmp_path, "val")
    dataset = PersonDataset(records, lip_transform(False, (32, 16)))
    with pytest.raises(DatasetError) as info:
        evaluate_parts(tiny_model, dataset, records, 20, progress=False)
    assert all(t in str(info.value) for t in texts), str(info.value)


def test_eval_without_eval_datasets_is_an_error(tiny_model):
    from personkit.config import Config
    from personkit.engine.evaluate import run_evaluation

    with pytest.raises(ValueError, match=r"data\.eval is empty"):
        run_evaluation(tiny_model, Config(model=TINY), progress=False)


# --------------------------------------------------------------------------- training


def test_training_skips_are_counted_in_the_log(tmp_path):
    from personkit.config import config_from_dict
    from personkit.engine.build import build_trainer

    names = [f"{pid:04d}_c{cam}s1_000{cam}51_01.jpg" for pid in (2, 7) for cam in (1, 2)]
    root = write_reid_folders(tmp_path / "market", {"bounding_box_train": names})
    (root / "bounding_box_train" / names[1]).write_bytes(b"not a jpeg")
    cfg = config_from_dict({
        "model": {**{k: v for k, v in dataclasses.asdict(TINY).items() if k != "backbone"},
                  "backbone": {"name": "resnet18", "norm": "group"}, "heads": ["reid"]},
        "data": {"num_workers": 0, "on_bad_image": "skip", "train": [{
            "name": "market", "type": "market1501", "root": str(root), "tasks": ["reid"],
            "batch_size": 4, "input_size": [32, 16], "augment": False,
            "options": {"attributes": False}}]},
        "train": {"iterations": 2, "device": "cpu", "log_every": 1, "checkpoint_every": 0,
                  "schedule": {"type": "constant"}}})
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    with pytest.warns(RuntimeWarning, match=names[1]):
        trainer.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r.get("bad_images") for r in log if "step" in r] == [1, 1]  # once per epoch


# --------------------------------------------------------------------------- predict


def test_predict_skips_counts_and_reports_degenerate_boxes(tmp_path, capsys):
    from personkit.inference import Predictor
    from personkit.inference.run import predict_source
    from personkit.models.build import build_model

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY, heads=("reid",))).eval()
    det = ("1,-1,5,5,10,20,0.9\n"  # fine
           "1,-1,5,5,0,20,0.9\n"  # zero width
           "1,-1,100,5,10,20,0.9\n"  # outside the 60×40 image
           "2,-1,5,5,-4,20,0.9\n"  # negative width
           "2,-1,10,10,10,10,0.8\n")  # fine
    source = open_input(_mot(tmp_path, det))
    out = tmp_path / "out"
    summary = predict_source(Predictor(model), source, out, vis=False, progress=False)
    assert summary["boxes"] == 2 and summary["skipped_boxes"] == 3
    assert json.loads((out / "summary.json").read_text())["skipped_boxes"] == 3
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["frame"], r["index"], r["score"]) for r in rows] == [(1, 0, 0.9), (2, 1, 0.8)]
    assert np.load(out / "embeddings.npy").shape[0] == 2
    assert "skipped 3 degenerate box(es)" in capsys.readouterr().err


def test_predict_error_leaves_no_partial_results(tmp_path):
    from personkit.inference import Predictor
    from personkit.inference.run import predict_source
    from personkit.models.build import build_model

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY, heads=("reid",))).eval()
    seq = _mot(tmp_path, "1,-1,5,5,10,20,0.9\n2,-1,5,5,10,20,0.9\n")
    source = open_input(seq)
    predictor = Predictor(model)
    calls = []

    def predict(image, boxes):  # fails on frame 2, after frame 1 was written
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("frame 2 failed")
        return Predictor.predict(predictor, image, boxes)

    predictor.predict = predict
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="frame 2 failed"):
        predict_source(predictor, source, out, vis=False, progress=False)
    assert sorted(p.name for p in out.iterdir()) == []
