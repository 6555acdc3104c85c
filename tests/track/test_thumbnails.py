"""Thumbnails that show the person (issue #34): the best view of a track is a whole box, not
one the frame cuts or a sliver at its edge, saved as the plain crop; the overlay picture,
on request, colours the box by the track's merged gender."""

from __future__ import annotations

import numpy as np
import pytest

from personkit.data.io import read_image
from personkit.inference.predictor import AttributePrediction, PersonResult
from personkit.track.run import BestViews, view_quality
from personkit.track.tracker import FrameTracks

W, H = 320, 240


def frame(box, score, colour, gender="male", t=1):
    """A frame with one person of ``colour`` in ``box`` (the rest grey) and its track."""
    image = np.full((H, W, 3), 128, np.uint8)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    image[max(0, y1):min(H, y2), max(0, x1):min(W, x2)] = colour
    result = PersonResult(box=tuple(float(v) for v in box), attributes={
        "gender": AttributePrediction(gender, 0.9)})
    return image, FrameTracks(t, np.array([7]), np.array([box], float), np.array([score]),
                              np.array([0]), [result])


def test_a_whole_view_beats_a_larger_better_scored_one_the_frame_cuts(tmp_path):
    views = BestViews()
    cut = (-30.0, 40.0, 60.0, 230.0)  # the person walks in: cut by the left edge
    sliver = (0.0, 40.0, 8.0, 230.0)  # the same, clipped by a detector: 8 px wide at the edge
    whole = (150.0, 80.0, 200.0, 200.0)  # smaller, lower score, all of it in view
    for t, (box, score, colour) in enumerate([(cut, 0.95, (250, 0, 0)),
                                              (sliver, 0.9, (0, 250, 0)),
                                              (whole, 0.6, (0, 0, 250)),
                                              (cut, 0.99, (250, 0, 0))], start=1):
        views.update(*frame(box, score, colour, t=t))
    paths = views.write(tmp_path, genders={7: "female"}, overlays=True)
    thumb = read_image(tmp_path / paths[7])
    assert thumb.shape[0] == 128
    centre = thumb[thumb.shape[0] // 2, thumb.shape[1] // 2]
    assert centre[2] > 200 and centre[0] < 50  # the blue (whole) person, not red or green
    overlay = read_image(tmp_path / "thumbs/0007_overlay.jpg")  # the drawn one differs
    assert overlay.shape == thumb.shape and np.abs(overlay.astype(int) - thumb).max() > 60


def test_view_quality_orders_whole_upright_score_size():
    assert view_quality(np.array([10, 10, 60, 150]), W, H, 0.5)[:3] == (True, 1.0, True)
    assert view_quality(np.array([0, 10, 50, 150]), W, H, 0.9)[0] is False  # at the edge
    assert view_quality(np.array([-20, 10, 30, 150]), W, H, 0.9)[1] == pytest.approx(0.6)
    assert view_quality(np.array([100, 10, 108, 150]), W, H, 0.9)[2] is False  # a sliver
    assert view_quality(np.array([100, 10, 150, 150]), W, H, 0.5) > view_quality(
        np.array([0, 10, 60, 200]), W, H, 0.99)


def test_the_overlay_box_takes_the_tracks_gender_not_the_frames(tmp_path):
    from personkit.inference.visualize import FEMALE, MALE

    views = BestViews()
    views.update(*frame((100.0, 40.0, 160.0, 200.0), 0.9, (128, 128, 128), gender="male"))
    views.write(tmp_path, genders={7: "female"}, overlays=True)
    overlay = read_image(tmp_path / "thumbs/0007_overlay.jpg").astype(int)
    edge = overlay[overlay.shape[0] // 2, :12].reshape(-1, 3)  # the box's left side
    to_female = np.abs(edge - np.array(FEMALE)).sum(1).min()
    to_male = np.abs(edge - np.array(MALE)).sum(1).min()
    assert to_female < to_male
