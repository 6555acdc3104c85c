"""Overlays: gender box colours, part overlay, skeleton, PNG output."""

from __future__ import annotations

import cv2
import numpy as np

from personkit.data.constants import MERGED5_CLASSES
from personkit.inference import AttributePrediction, PersonResult
from personkit.inference.visualize import (
    FEMALE,
    MALE,
    draw_results,
    part_palette,
    save_image,
    voc_palette,
)


def _person(gender: str, box=(10, 10, 50, 90), joints: bool = True) -> PersonResult:
    x1, y1, x2, y2 = box
    parts = np.zeros((y2 - y1, x2 - x1), np.uint8)
    parts[10:30, 5:35] = 2  # upper body
    kp = np.zeros((16, 3), np.float32)
    kp[:, 0] = np.linspace(x1 + 5, x2 - 5, 16)
    kp[:, 1] = np.linspace(y1 + 5, y2 - 5, 16)
    kp[:, 2] = 0.9 if joints else 0.0  # joints below the threshold are not drawn
    return PersonResult(box=box, attributes={"gender": AttributePrediction(gender, 0.9)},
                        keypoints=kp, parts=parts, parts_box=box, part_classes=MERGED5_CLASSES)


def test_box_colour_follows_gender_and_parts_are_blended():
    image = np.zeros((100, 120, 3), np.uint8)
    people = [_person("female", joints=False), _person("male", (60, 10, 100, 90))]
    out = draw_results(image, people, text=())
    assert out.shape == image.shape and image.max() == 0  # input untouched
    assert tuple(out[50, 10]) == FEMALE and tuple(out[50, 60]) == MALE  # left box edges
    blended = (0.5 * part_palette(5)[2]).round()
    np.testing.assert_array_equal(out[22, 17], blended)  # an upper-body pixel
    assert out[5, 5].max() == 0  # outside every box
    skeleton = draw_results(image, people[1:], parts=False, boxes=False)
    assert skeleton[10:90, 60:100].any() and not skeleton[:, :60].any()


def test_save_png_of_the_expected_size(tmp_path):
    image = np.full((90, 70, 3), 90, np.uint8)
    path = save_image(tmp_path / "vis" / "frame.png", draw_results(image, [_person("female")]))
    assert path.stat().st_size > 0
    assert cv2.imread(str(path)).shape == (90, 70, 3)


def test_grayscale_canvas_becomes_rgb():
    out = draw_results(np.zeros((100, 60), np.uint8), [_person("male")], parts=False, text=())
    assert out.shape == (100, 60, 3) and tuple(out[50, 10]) == MALE


def test_palettes_are_fixed():
    lip = voc_palette(20)
    assert lip.shape == (20, 3) and lip[0].tolist() == [0, 0, 0] and lip[1].tolist() == [128, 0, 0]
    assert len({tuple(c) for c in lip}) == 20


def test_a_small_crop_is_enlarged_with_its_overlay():
    """A 128×64 person crop overlay is drawn 2× larger (issue #23, item 8), the results
    scaled with it: pixel centres map as x' = (x + 0.5)·2 − 0.5."""
    from personkit.inference.visualize import scale_result

    crop = np.full((128, 64, 3), 60, np.uint8)
    kp = np.tile([[10.0, 20.0, 1.0]], (16, 1))
    parts = np.zeros((128, 64), np.uint8)
    parts[40:80, 20:40] = 3
    r = PersonResult(box=(0.0, 0.0, 64.0, 128.0), keypoints=kp, parts=parts,
                     parts_box=(0, 0, 64, 128), part_classes=tuple(str(i) for i in range(20)))
    out = draw_results(crop, [r], min_height=256)
    assert out.shape == (256, 128, 3) and draw_results(crop, [r]).shape == crop.shape
    big = scale_result(r, 2)
    assert big.box == (0.0, 0.0, 128.0, 256.0) and big.parts.shape == (256, 128)
    np.testing.assert_allclose(big.keypoints[0, :2], [20.5, 40.5])
    assert (big.parts[80:160, 40:80] == 3).all() and big.keypoints[0, 2] == 1.0
    assert draw_results(np.zeros((300, 200, 3), np.uint8), [r],
                        min_height=256).shape == (300, 200, 3)
