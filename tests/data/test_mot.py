"""MOT Challenge files (personkit/data/mot.py): rows grouped by frame once for ``predict`` and
``track``, results that read back as the boxes written, sorted image listing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from personkit.data.mot import (
    list_images,
    read_detections,
    read_mot_rows,
    write_mot_results,
)
from personkit.inference.sources import read_mot


def _sequence(tmp_path, det: str, frames: int = 3):
    seq = tmp_path / "seq"
    (seq / "img1").mkdir(parents=True)
    (seq / "det").mkdir()
    for t in range(1, frames + 1):
        cv2.imwrite(str(seq / "img1" / f"{t:06d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    (seq / "det" / "det.txt").write_text(det)
    return seq


def test_rows_are_grouped_by_frame_in_file_order(tmp_path):
    seq = _sequence(tmp_path, "3,-1,1,1,5,5,0.9\n1,-1,2,2,5,5,0.8\n3,-1,3,3,5,5,0.7\n")
    rows = read_mot_rows(seq / "det" / "det.txt")
    groups = rows.frame_rows()
    assert list(groups) == [1, 3] and all(type(t) is int for t in groups)
    assert [g.tolist() for g in groups.values()] == [[1], [0, 2]]


def test_predict_and_track_see_the_same_boxes(tmp_path):
    seq = _sequence(tmp_path, "3,-1,1,1,5,5,0.9\n1,-1,2,2,5,5,0.8\n3,4,3,3,5,5,1.5\n")
    frames = read_mot(seq)
    dets = read_detections(seq / "det" / "det.txt", n_frames=3)
    assert [len(f.boxes) for f in frames] == [1, 0, 2]  # a frame without rows is kept
    for f in frames:
        boxes, scores = dets.frame(f.frame)
        np.testing.assert_array_equal(f.boxes, boxes)
        np.testing.assert_array_equal(np.clip(f.scores, 0, 1), scores)  # track clips scores
    assert dets.gt_ids[3].tolist() == [-1, 4] and dets.lines[3].tolist() == [1, 3]


def test_a_row_beyond_the_sequence_is_named(tmp_path):
    seq = _sequence(tmp_path, "1,-1,1,1,5,5,0.9\n4,-1,1,1,5,5,0.9\n")
    with pytest.raises(ValueError, match=r"det.txt:2: detections for frame 4, beyond the 3"):
        read_detections(seq / "det" / "det.txt", n_frames=3)


def test_results_read_back_as_written(tmp_path):
    rows = [(2, 7, np.array([10.0, 20.0, 30.0, 60.0]), 0.5),
            (1, 3, np.array([0.0, 0.0, 5.5, 9.25]), 1.0)]
    path = write_mot_results(tmp_path / "out" / "results.txt", rows)
    assert path.read_text().splitlines()[0] == "1,3,1.00,1.00,5.50,9.25,1.0000,-1,-1,-1"
    back = read_detections(path)
    np.testing.assert_allclose(back.boxes[2], [[10, 20, 30, 60]])
    np.testing.assert_allclose(back.boxes[1], [[0, 0, 5.5, 9.25]])
    assert back.gt_ids[2].tolist() == [7]
    assert write_mot_results(tmp_path / "empty.txt", []).read_text() == ""


def test_images_are_listed_by_name(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.jpg").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    with pytest.raises(FileNotFoundError, match="folder not found"):
        list_images(tmp_path / "missing")
