"""Person detectors (personkit/inference/detectors.py): the shared clean-up, the ONNX layouts
users bring (decoded from small ONNX files exported here from torch modules that emit those
layouts with known boxes), torchvision detectors with random weights, and the errors."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from fake_detectors import Constant, export

from personkit.inference.detectors import (
    OnnxDetector,
    build_torchvision,
    clean_detections,
    letterbox,
    open_detector,
)

pytest.importorskip("onnxruntime")

# A 32×64 (h×w) frame into a 64×64 input: gain 1; ultralytics centres it (16 px above),
# YOLOX puts it at the top left.
FRAME = np.zeros((32, 64, 3), np.uint8)
PERSON = [10.0, 5.0, 30.0, 25.0]  # x1, y1, x2, y2 in the frame


def cxcywh(box, dy=0.0):
    x1, y1, x2, y2 = box
    return [(x1 + x2) / 2, (y1 + y2) / 2 + dy, x2 - x1, y2 - y1]


def test_clean_detections_clips_drops_and_counts():
    raw = np.array([[-5, -5, 10, 10, 0.9], [1, 1, np.nan, 4, 0.8], [50, 5, 50, 9, 0.9],
                    [2, 2, 8, 8, 0.95], [0, 0, 5, 5, 0.1]], np.float32)
    boxes, dropped = clean_detections(raw, width=40, height=20, min_score=0.5)
    assert dropped == 1  # the NaN row; the empty box and the low score are simply left out
    assert boxes.tolist() == [[2, 2, 8, 8, pytest.approx(0.95)], [0, 0, 10, 10,
                                                                  pytest.approx(0.9)]]


def test_letterbox_maps_back():
    canvas, gain, (dx, dy) = letterbox(np.full((30, 60, 3), 7, np.uint8), (64, 64))
    assert canvas.shape == (64, 64, 3) and gain == pytest.approx(64 / 60)
    assert (dx, dy) == (0.0, 16.0) and canvas[16:48, :].mean() == pytest.approx(7, abs=1)
    _, _, offset = letterbox(np.zeros((30, 60, 3), np.uint8), (64, 64), centre=False)
    assert offset == (0.0, 0.0)


def test_yolov8_layout_is_decoded_with_letterbox_and_nms(tmp_path):
    # [1, 4+C, N], C = 3 classes (person = 0), no objectness
    rows = [cxcywh(PERSON, 16) + [0.9, 0.0, 0.0],
            cxcywh([11, 6, 31, 26], 16) + [0.8, 0.0, 0.0],  # a duplicate: NMS removes it
            cxcywh([40, 2, 60, 30], 16) + [0.1, 0.95, 0.0],  # a car
            cxcywh([40, 2, 60, 30], 16) + [0.2, 0.0, 0.0]]  # a person below the threshold
    rows += [[0.0] * 7] * 12  # more anchors than rows, as in every real export (8400 ≫ 84)
    out = torch.tensor(rows).T[None]
    path = export(Constant(out), tmp_path / "yolo.onnx", torch.zeros(1, 3, 64, 64))
    det = OnnxDetector(path, min_score=0.5)
    assert det.layout == "yolov8"
    (boxes,) = det.detect([FRAME])
    assert boxes.shape == (1, 5)
    np.testing.assert_allclose(boxes[0], PERSON + [0.9], atol=1e-4)


def test_yolox_layout_multiplies_objectness(tmp_path):
    # [1, N, 5+C]: cx, cy, w, h, obj, C class scores; top-left letterbox, BGR 0-255 input
    rows = [cxcywh(PERSON) + [0.9, 0.8, 0.1],  # score 0.72
            cxcywh([40, 2, 60, 30]) + [0.4, 0.9, 0.0],  # 0.36: below 0.5
            cxcywh([40, 2, 60, 30]) + [0.9, 0.1, 0.9]] + [[0.0] * 7] * 5  # a car, padding
    path = export(Constant(torch.tensor([rows])), tmp_path / "yolox.onnx",
                  torch.zeros(1, 3, 64, 64))
    det = OnnxDetector(path, min_score=0.5)
    assert det.layout == "yolox"
    (boxes,) = det.detect([FRAME])
    np.testing.assert_allclose(boxes, [PERSON + [0.72]], atol=1e-4)


def test_torchvision_export_layout_keeps_persons_and_counts_nan(tmp_path):
    boxes = torch.tensor([PERSON, [0, 0, 80, 40], [1, 1, float("nan"), 3]])
    labels, scores = torch.tensor([1, 3, 1]), torch.tensor([0.9, 0.99, 0.8])
    path = export(Constant(boxes, labels, scores), tmp_path / "tv.onnx",
                  torch.zeros(3, 32, 64), ["boxes", "labels", "scores"])
    det = OnnxDetector(path)
    assert det.layout == "torchvision"
    (got,) = det.detect([FRAME])
    np.testing.assert_allclose(got, [PERSON + [0.9]], atol=1e-6)
    assert det.dropped == 1


def test_torchvision_detector_with_random_weights_runs_offline():
    det = open_detector("fasterrcnn_mobilenet_v3_large_320_fpn:random", min_score=0.0)
    frames = [np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)] * 2
    out = det.detect(frames)
    assert len(out) == 2 and all(b.ndim == 2 and b.shape[1] == 5 for b in out)
    for b in out:  # random weights need not find people, but whatever they find is clean
        assert np.isfinite(b).all() and (b[:, [0, 2]] <= 160).all() and (b[:, [1, 3]] <= 120).all()
        assert (np.diff(b[:, 4]) <= 0).all()


def test_missing_weights_name_the_file_the_folder_and_the_url(monkeypatch, tmp_path):
    import torchvision.models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as e:
        build_torchvision("fasterrcnn_mobilenet_v3_large_320_fpn")
    text = str(e.value)
    assert "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth" in text
    assert str(tmp_path / "hub" / "checkpoints") in text and "https://download.pytorch.org" in text


def test_bad_detectors_are_named(tmp_path):
    with pytest.raises(ValueError, match="valid: .*fasterrcnn_mobilenet_v3_large_fpn"):
        open_detector("yolo-nonexistent")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        open_detector(tmp_path / "missing.onnx")
    odd = export(Constant(torch.zeros(1, 10)), tmp_path / "odd.onnx", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"odd.onnx: not a detector layout.*\[1, 10\]"):
        open_detector(odd)
    with pytest.raises(ValueError, match="score threshold"):
        open_detector("fasterrcnn_mobilenet_v3_large_320_fpn:random", min_score=2.0)


def test_yolox_default_export_is_decoded_from_its_grids(tmp_path):
    """YOLOX's default export leaves boxes as grid offsets and log sizes: 8×8 + 4×4 + 2×2 = 84
    cells at 64×64. A person in cell (2, 3) of stride 8, offsets 0.5, 20 px wide and high."""
    rows = np.zeros((84, 7), np.float32)
    rows[3 * 8 + 2] = [0.5, 0.5, np.log(20 / 8), np.log(20 / 8), 0.9, 0.8, 0.1]
    path = export(Constant(torch.tensor(rows)[None]), tmp_path / "raw.onnx",
                  torch.zeros(1, 3, 64, 64))
    (boxes,) = OnnxDetector(path, min_score=0.5).detect([np.zeros((64, 64, 3), np.uint8)])
    np.testing.assert_allclose(boxes, [[10, 18, 30, 38, 0.72]], atol=1e-4)
