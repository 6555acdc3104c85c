"""The embeddings given to :class:`personkit.track.Tracker` reach BoxMOT's association and
change it: two overlapping people whose appearances swap half-way (docs/tracking.md).

No network: a stand-in predictor returns fixed one-hot embeddings in detection order.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from personkit.inference.predictor import PersonResult

FRAMES, SWAP = 12, 6
# Two boxes overlapping with IoU 0.6: above DeepOcSort's iou_threshold 0.3 for both tracks, so
# the motion cost is ambiguous and the appearance term decides (BoxMOT's `associate`).
BOXES = np.array([[40, 20, 80, 120], [50, 20, 90, 120]], np.float32)
E = np.eye(8, dtype=np.float32)


class _FixedEmbeddings:
    """Stands in for a Predictor with a ReID head: frame ``t`` gets ``embeddings[t]``."""

    heads = ("reid",)
    meta = SimpleNamespace(embedding_dim=8)

    def __init__(self, embeddings):
        self.embeddings, self.calls = embeddings, 0

    def predict(self, image, boxes):  # noqa: ARG002 - Predictor.predict's signature
        e = self.embeddings[self.calls]
        self.calls += 1
        return [PersonResult(tuple(float(v) for v in b), e[k]) for k, b in enumerate(boxes)]


def _ids_per_box(tracker_name, mode, **kwargs):
    """Track id of box 0 and box 1 in every frame; appearances swap at frame ``SWAP``."""
    from personkit.track import Tracker

    embeddings = [E[[0, 1]] if t < SWAP else E[[1, 0]] for t in range(FRAMES)]
    tracker = Tracker(_FixedEmbeddings(embeddings), tracker_name, mode, **kwargs)
    image = np.zeros((160, 160, 3), np.uint8)
    out = []
    for _ in range(FRAMES):
        ft = tracker.update(image, BOXES, np.array([0.9, 0.9], np.float32))
        by_det = dict(zip(ft.detections.tolist(), ft.track_ids.tolist(), strict=True))
        out.append((by_det[0], by_det[1]))
    return out


def test_deepocsort_ids_follow_appearance_with_embeddings(extra):
    ids = _ids_per_box("deepocsort", "personkit")
    before, after = ids[SWAP - 1], ids[-1]
    assert before[0] != before[1]
    assert all(i == before for i in ids[:SWAP])
    # Box 0 now looks like the person who was box 1: the ids swap boxes and stay swapped.
    assert all(i == (before[1], before[0]) for i in ids[SWAP:]), ids
    assert after == (before[1], before[0])


def test_deepocsort_ids_follow_motion_without_embeddings(extra):
    ids = _ids_per_box("deepocsort", "none")
    assert ids[0][0] != ids[0][1]
    assert all(i == ids[0] for i in ids), ids


def test_tracker_args_reach_boxmot_and_override_personkit_defaults(extra):
    from personkit.track import Tracker
    from personkit.track.tracker import APPEARANCE_DEFAULTS, parse_tracker_arg

    assert parse_tracker_arg("appearance_thresh=0.4") == ("appearance_thresh", 0.4)
    assert parse_tracker_arg("max_age=12") == ("max_age", 12)
    assert parse_tracker_arg("aw_off=true") == ("aw_off", True)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_tracker_arg("appearance_thresh")
    inner = Tracker(_FixedEmbeddings([]), "botsort", "personkit",
                    tracker_kwargs={"appearance_thresh": 0.4})._tracker
    assert inner.appearance_thresh == 0.4 and inner.use_embeddings
    for key, value in APPEARANCE_DEFAULTS["botsort"].items():
        if key != "appearance_thresh":
            assert getattr(inner, key) == value
    motion = Tracker(None, "botsort", "none")._tracker
    assert not motion.use_embeddings and motion.proximity_thresh == 0.5  # BoxMOT's default
    with pytest.raises(ValueError, match="bogus"):
        Tracker(None, "deepocsort", "none", tracker_kwargs={"bogus": 1})


def test_appearance_gate_is_a_quantile_of_same_frame_distances():
    from personkit.track.tracker import AppearanceGate

    gate = AppearanceGate(0.5)
    assert gate.update(E[:1]) == 0.0  # one detection: no pair, appearance stays off
    a = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)  # distances 0.4, 1.0, 0.2
    assert gate.update(a) == pytest.approx(0.4, abs=1e-6)
    assert gate.update(np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="quantile"):
        AppearanceGate(1.5)


def test_botsort_threshold_follows_the_gate_and_a_fixed_one_wins(extra):
    from personkit.track import Tracker

    embeddings = [E[[0, 1]]] * 3
    tracker = Tracker(_FixedEmbeddings(embeddings), "botsort", "personkit",
                      appearance_quantile=0.5)
    assert tracker._tracker.proximity_thresh == 1.0
    tracker.update(np.zeros((160, 160, 3), np.uint8), BOXES, np.array([0.9, 0.9]))
    assert tracker._tracker.appearance_thresh == pytest.approx(1.0)  # orthogonal: distance 1
    fixed = Tracker(_FixedEmbeddings(embeddings), "botsort", "personkit",
                    tracker_kwargs={"appearance_thresh": 0.3})
    fixed.update(np.zeros((160, 160, 3), np.uint8), BOXES, np.array([0.9, 0.9]))
    assert fixed._tracker.appearance_thresh == 0.3
