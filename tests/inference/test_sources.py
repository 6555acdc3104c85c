"""Inputs of `personkit predict`: boxes files, crop folders, MOT sequences."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from personkit.inference.sources import open_input, read_boxes, read_image, read_mot


def _write_image(path, h=40, w=60, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))
    return path


def test_text_boxes_with_comments_and_optional_score(tmp_path):
    f = tmp_path / "boxes.txt"
    f.write_text("# x1,y1,x2,y2,score\n1,2,30,40\n\n5 6 50 60 0.7  # second\n")
    np.testing.assert_allclose(read_boxes(f), [[1, 2, 30, 40, 1], [5, 6, 50, 60, 0.7]])


def test_json_boxes_in_every_layout(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"boxes": [[1, 2, 3, 4], {"bbox": [5, 6, 7, 8], "score": 0.5}]}))
    np.testing.assert_allclose(read_boxes(f), [[1, 2, 3, 4, 1], [5, 6, 7, 8, 0.5]])
    f.write_text("[]")
    assert read_boxes(f).shape == (0, 5)


def test_bad_boxes_file_names_the_line(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(ValueError, match=r"bad.csv:2"):
        read_boxes(f)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_boxes(tmp_path / "missing.txt")


def test_read_image_is_rgb_and_checks_the_file(tmp_path):
    path = tmp_path / "a.png"
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR order
    cv2.imwrite(str(path), bgr)
    assert read_image(path)[0, 0].tolist() == [0, 0, 255]
    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((4, 5), np.uint8))
    assert read_image(tmp_path / "g.png").shape == (4, 5, 3)  # grayscale file -> 3 channels
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        read_image(tmp_path / "junk.jpg")


def _mot_sequence(root, det=None, gt=None):
    for i in (1, 2, 3):
        _write_image(root / "img1" / f"{i:06d}.jpg")
    for name, rows in (("det", det), ("gt", gt)):
        if rows is not None:
            (root / name).mkdir(parents=True)
            (root / name / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def test_mot_det_parses_with_one_based_pixels(tmp_path):
    seq = _mot_sequence(tmp_path / "MOT16-02", det=[
        "1,-1,1,1,10,20,0.9,-1,-1,-1", "1,-1,11,5,10,20,-0.5,-1,-1,-1", "3,-1,21,1,5,5,0.3"])
    frames = read_mot(seq)
    assert [f.frame for f in frames] == [1, 2, 3] and frames[0].name == "000001"
    np.testing.assert_allclose(frames[0].boxes, [[0, 0, 10, 20], [10, 4, 20, 24]])
    np.testing.assert_allclose(frames[0].scores, [0.9, -0.5])
    assert len(frames[1].boxes) == 0 and len(frames[2].boxes) == 1
    assert len(read_mot(seq, min_score=0.5)[0].boxes) == 1


def test_mot_gt_keeps_considered_pedestrians(tmp_path):
    seq = _mot_sequence(tmp_path / "seq", gt=[
        "1,1,1,1,10,20,1,1,0.8",  # pedestrian, considered
        "1,2,1,1,10,20,0,1,0.8",  # pedestrian, not considered
        "1,3,1,1,10,20,1,7,1.0",  # static person (class 7)
        "2,1,3,3,10,20,1,1,0.5"])
    frames = read_mot(seq, source="gt")
    assert frames[0].ids.tolist() == [1] and frames[1].ids.tolist() == [1]


def test_open_input_detects_the_kind(tmp_path):
    seq = _mot_sequence(tmp_path / "seq", det=["1,-1,1,1,10,20,1"])
    assert open_input(seq).kind == "mot"
    crops = tmp_path / "crops"
    _write_image(crops / "b.png", h=60, w=40), _write_image(crops / "a.jpg", h=60, w=40)
    (crops / "notes.txt").write_text("not an image")
    source = open_input(crops)
    assert source.kind == "crops" and [f.name for f in source] == ["a", "b"]
    # full frames (wider than tall) are not person crops: refused, unless said to be crops
    frames = tmp_path / "frames"
    _write_image(frames / "000001.jpg"), _write_image(frames / "000002.jpg")
    with pytest.raises(ValueError, match=r"looks like full frames.*000001\.jpg is 60×40.*"
                                         r"boxes file.*MOT sequence.*--crops"):
        open_input(frames)
    assert open_input(frames, crops=True).kind == "crops"
    image = _write_image(tmp_path / "street.jpg")
    with pytest.raises(ValueError, match="needs a boxes file"):
        open_input(image)
    (tmp_path / "street.txt").write_text("1,2,30,35\n")
    source = open_input(image)
    assert source.kind == "image" and source.frames[0].boxes.tolist() == [[1, 2, 30, 35]]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_input(tmp_path / "nowhere")


def test_mot_gaps_and_rows_beyond_the_images_are_errors(tmp_path):
    seq = _mot_sequence(tmp_path / "seq", det=["1,-1,1,1,10,20,1", "4,-1,1,1,10,20,1"])
    with pytest.raises(ValueError, match=r"det.txt:2: detections for frame 4, beyond the 3"):
        read_mot(seq)
    (seq / "det" / "det.txt").write_text("1,-1,1,1,10,20,1\n")
    (seq / "img1" / "000002.jpg").unlink()
    with pytest.raises(ValueError, match=r"img1: 1 of 3 frames missing \(frame numbers 2\)"):
        read_mot(seq)


def test_mot_short_or_non_finite_rows_name_the_line(tmp_path):
    seq = _mot_sequence(tmp_path / "seq", det=["1,-1,1,1,10,20,1", "2,-1,1,1,10,20"])
    with pytest.raises(ValueError, match=r"det.txt:2: expected at least 7 finite numbers"):
        read_mot(seq)
    (seq / "det" / "det.txt").write_text("1,-1,1,1,nan,20,1\n")
    with pytest.raises(ValueError, match=r"det.txt:1: expected at least 7 finite numbers"):
        read_mot(seq)
