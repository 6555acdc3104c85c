"""Person detectors (personkit/inference/detectors.py; the shared clean-up and the torchvision
back-end in personkit/models/detector.py): the shared clean-up, the ONNX layouts users bring
(decoded from small ONNX files exported here from torch modules that emit those layouts with
known boxes), torchvision detectors with random weights, and the errors."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from fake_detectors import Constant, Probe, export

from personkit.inference.detectors import OnnxDetector, letterbox, open_detector
from personkit.models.detector import build_torchvision, clean_detections

pytest.importorskip("onnxruntime")

# A 32×64 (h×w) frame into a 64×64 input: gain 1; ultralytics centres it (16 px above),
# YOLOX puts it at the top left.
FRAME = np.zeros((32, 64, 3), np.uint8)
PERSON = [10.0, 5.0, 30.0, 25.0]  # x1, y1, x2, y2 in the frame
# The same frame in one colour (RGB 204, 30, 51): a Probe fake reads back how it was prepared.
COLOURED = np.zeros((32, 64, 3), np.uint8) + np.array([204, 30, 51], np.uint8)


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
    # [1, N, 5+C], N = 8×8 + 4×4 + 2×2 = 84 grid cells at 64×64: cx, cy, w, h, obj, C class
    # scores; top-left letterbox, BGR 0-255 input. The person's objectness is the probe
    # mean(input channel 2, rows 0:32) / 255: the frame's red 204 -> 0.8 only when the input
    # is BGR, 0-255, with the frame at the top
    rows = [cxcywh(PERSON) + [0.0, 0.9, 0.1],  # objectness 0.8 (probe): score 0.72
            cxcywh([40, 2, 60, 30]) + [0.4, 0.9, 0.0],  # 0.36: below 0.5
            cxcywh([40, 2, 60, 30]) + [0.9, 0.1, 0.9]] + [[0.0] * 7] * 81  # a car, padding
    fake = Probe(torch.tensor([rows]), [((0, 0, 4), 2, (0, 32), 1 / 255)])
    path = export(fake, tmp_path / "yolox.onnx", torch.zeros(1, 3, 64, 64))
    det = OnnxDetector(path, min_score=0.5)
    assert det.layout == "yolox"
    (boxes,) = det.detect([COLOURED])
    np.testing.assert_allclose(boxes, [PERSON + [0.72]], atol=1e-4)


def test_yolov5_layout_is_decoded_with_rgb_input_and_a_centred_letterbox(tmp_path):
    """YOLOv5's [1, 3 × cells, 5+C] (25200 × 85 at 640×640; 252 × 8 here at 64×64): rows
    already in input pixels, score = objectness × class, input RGB / 255 in a centred
    letterbox with grey 114 padding (the 32-pixel-high frame at rows 16:48). Objectness is
    probed from the input: the person's is mean(channel 0 = red, rows 16:48) = 204 / 255 = 0.8
    (BGR would give 0.2, 0-255 input 204, a top-left frame a mix with the padding); the second
    person's is mean(channel 1, rows 0:16) = the padding's 114 / 255."""
    rows = np.zeros((252, 8), np.float32)
    rows[0] = cxcywh(PERSON, 16) + [0.0, 1.0, 0.0, 0.0]
    rows[1] = cxcywh([40, 2, 60, 30], 16) + [0.0, 1.0, 0.0, 0.0]
    rows[2] = cxcywh([11, 6, 31, 26], 16) + [0.5, 0.9, 0.0, 0.0]  # a duplicate: NMS drops it
    rows[3] = cxcywh([40, 2, 60, 30], 16) + [0.9, 0.1, 0.95, 0.0]  # a car
    fake = Probe(torch.from_numpy(rows)[None], [((0, 0, 4), 0, (16, 48), 1.0),
                                                ((0, 1, 4), 1, (0, 16), 1.0)])
    path = export(fake, tmp_path / "yolov5.onnx", torch.zeros(1, 3, 64, 64))
    det = OnnxDetector(path, min_score=0.3)
    assert det.layout == "yolov5" and det.name == "yolov5:yolov5.onnx"
    (boxes,) = det.detect([COLOURED])
    np.testing.assert_allclose(boxes, [PERSON + [204 / 255], [40, 2, 60, 30, 114 / 255]],
                               atol=1e-4)


def _rows_model(tmp_path, n, width=8, size=64):
    path = tmp_path / f"rows{n}x{width}.onnx"
    return export(Constant(torch.zeros(1, n, width)), path, torch.zeros(1, 3, size, size))


def test_yolo_row_layouts_are_told_apart_by_their_row_count(tmp_path):
    """At 64×64: 84 rows is YOLOX (one per cell), 252 or 255 YOLOv5 (3 anchors per cell of
    strides 8/16/32, or 8/16/32/64); any other count is refused by name, and so is an output
    that fits two layouts."""
    assert OnnxDetector(_rows_model(tmp_path, 84)).layout == "yolox"
    assert OnnxDetector(_rows_model(tmp_path, 252)).layout == "yolov5"
    assert OnnxDetector(_rows_model(tmp_path, 255)).layout == "yolov5"
    with pytest.raises(ValueError, match=r"rows100x8.onnx: output \[1, 100, 8\] for the 64×64 "
                                         r"input has the rows of YOLOv5 and of YOLOX.*YOLOX has "
                                         r"84 rows.*YOLOv5 252.*100 is neither"):
        OnnxDetector(_rows_model(tmp_path, 100))
    with pytest.raises(ValueError, match=r"rows84x84.onnx: .* fits several layouts "
                                         r"\(yolov8, yolox\)"):
        OnnxDetector(_rows_model(tmp_path, 84, 84))


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


def test_detectors_on_a_cuda_device_run_there_or_say_why_not(tmp_path):
    """``open_detector(..., "cuda")`` (issue #32 item 10): an ONNX file runs on ONNX Runtime's
    CUDA provider when it has one, else on the CPU with a warning saying so; a torch back-end
    runs on the GPU, or on a machine without CUDA is an error naming the device."""
    import onnxruntime

    path = _rows_model(tmp_path, 84)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert open_detector(path, "cuda").providers[0] == "CUDAExecutionProvider"
    else:
        with pytest.warns(RuntimeWarning, match=r"rows84x8.onnx runs on the CPU, not cuda: "
                                                r"this ONNX Runtime has no CUDA provider"):
            det = open_detector(path, "cuda")
        assert det.providers == ["CPUExecutionProvider"]
        assert det.detect([FRAME])[0].shape == (0, 5)
    assert open_detector(path, "cpu").providers == ["CPUExecutionProvider"]
    name = "fasterrcnn_mobilenet_v3_large_320_fpn:random"
    if torch.cuda.is_available():
        det = open_detector(name, "cuda", min_score=0.0)
        assert next(det.model.parameters()).is_cuda and det.detect([FRAME])[0].shape[1] == 5
    else:
        with pytest.raises(ValueError, match="detector device='cuda' but CUDA is not available"):
            open_detector(name, "cuda")
