"""Attribute decisions calibrated on track means (issue 34): the synthetic people's labels,
the means, the fitted thresholds, where they are stored and who uses them."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from personkit.inference import Predictor
from personkit.synth.appearance import get_identity
from personkit.synth.mot import ID_OFFSET, sequence_person, write_mot_sequence
from personkit.track.attribute_calibration import (
    binary_attributes,
    calibrate_track_attributes,
    gt_track_means,
    save_track_attributes,
)

_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
from tiny_models import make_model, save_model  # noqa: E402


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """Four tiny synthetic cameras, each of its own three people."""
    root = tmp_path_factory.mktemp("cams")
    return [write_mot_sequence(root / f"tiny-{s}", "tiny", seed=s) for s in range(4)]


@pytest.fixture(scope="module")
def predictor():
    return Predictor(make_model(), flip_tta=False)


def test_a_synthetic_person_is_named_with_their_labels(cameras, tmp_path):
    identity, labels = sequence_person(cameras[1], 2)
    truth = get_identity(1, ID_OFFSET + 2)
    assert identity == "synth:1:2"
    assert labels["backpack"] == ("yes" if truth.backpack is not None else "no")
    assert labels["gender"] == ("female" if truth.female else "male")
    assert set(labels) >= {"age", "hat", "handbag", "bag", "hair", "up", "down", "clothes"}
    other = tmp_path / "other"
    other.mkdir()
    (other / "seqinfo.ini").write_text("[Sequence]\nname=other\nseqLength=1\n")
    with pytest.raises(ValueError, match="seqinfo.ini: identities='' is not synth:SEED"):
        sequence_person(other, 1)


def test_a_track_mean_is_the_mean_of_its_visible_frames(cameras, predictor):
    means = gt_track_means(predictor, cameras[0])
    gt = np.loadtxt(cameras[0] / "gt" / "gt.txt", delimiter=",", ndmin=2)
    assert set(means) == {int(i) for i in gt[gt[:, 8] >= 0.3, 1]}
    names = binary_attributes(predictor)
    assert names == ["gender", "backpack"]  # upcolor has eight classes
    rows = gt[(gt[:, 1] == 1) & (gt[:, 8] >= 0.3)]
    probs = []
    for row in rows:  # MOT boxes are 1-based: x1 = left - 1
        image = predictor_image(cameras[0], int(row[0]))
        box = [row[2] - 1, row[3] - 1, row[2] - 1 + row[4], row[3] - 1 + row[5]]
        box = np.clip(box, 0, [image.shape[1], image.shape[0]] * 2)
        r = predictor.predict(image, [box])[0]
        probs.append([r.attributes[n].probabilities[1] for n in names])
    np.testing.assert_allclose(means[1], np.mean(probs, axis=0), rtol=1e-5, atol=1e-6)
    halves = gt_track_means(predictor, cameras[0], every=2)
    assert set(halves) <= set(means) and not np.allclose(halves[1], means[1], atol=0)


def predictor_image(seq: Path, frame: int) -> np.ndarray:
    from personkit.data.io import read_image

    return read_image(seq / "img1" / f"{frame:06d}.jpg")


def test_thresholds_fit_track_means_and_an_attribute_without_positives_is_left_out(
        cameras, predictor):
    """Labels that split the tracks by their mean backpack probability away from 0.5: the
    fitted threshold separates them (and is scored on the other half of the identities), and
    the gender, "male" for everyone here, cannot be fitted."""
    means = {(seq, g): p for seq in cameras for g, p in gt_track_means(predictor, seq, 2).items()}
    backpack = np.array([p[1] for p in means.values()])
    cut = np.median(backpack)  # the upper half carries one
    assert not cut >= 0.5 > backpack[backpack < cut].max()  # 0.5 would not separate them

    def labels(seq, gid):
        carries = means[(seq, gid)][1] >= cut
        return f"{seq.name}:{gid}", {"backpack": "yes" if carries else "no", "gender": "male"}

    got = calibrate_track_attributes(predictor, cameras, labels)
    assert got["tracks"] == len(means) and got["identities"] == len(means)
    assert got["positives"] == {"gender": 0, "backpack": len(means) // 2}
    assert got["left_out"] == ["gender"] and set(got["thresholds"]) == {"backpack"}
    assert got["changed"] == ["backpack"]  # from the arg-max: no crop threshold here
    t = got["thresholds"]["backpack"]
    assert backpack[backpack < cut].max() < t <= cut
    assert got["mA/backpack"] > 0.5 and got["sequences"] == [c.name for c in cameras]
    with pytest.raises(ValueError, match="no ground-truth track in"):
        calibrate_track_attributes(predictor, [], labels)


def test_track_thresholds_are_stored_kept_and_used_for_tracks(tmp_path):
    """``track_attributes`` joins the model's record (refused without one), survives a new
    ``personkit eval`` of the same weights, and decides tracks; crops keep their own."""
    from personkit.engine.evaluate import save_match_calibration
    from personkit.track.tracker import Tracker

    model = make_model()
    path = save_model(model, tmp_path / "model.safetensors")
    plain = Predictor.from_checkpoint(path, device="cpu")
    tracks = {"thresholds": {"backpack": 0.7}, "tracks": 12}
    with pytest.raises(ValueError, match="no calibration record for model .* run `personkit eval`"):
        save_track_attributes(path, plain, tracks)
    results = {"market": {"match": {"threshold": 0.01},
                          "attributes": {"calibrated": {"thresholds": {"backpack": 0.3,
                                                                       "gender": 0.4}}}}}
    save_match_calibration(results, model, path)
    save_track_attributes(path, plain, tracks)
    save_match_calibration(results, model, path)  # evaluated again: the fit is kept
    (record,) = json.loads((tmp_path / "calibration.json").read_text()).values()
    assert record["track_attributes"] == tracks and record["threshold"] == 0.01
    p = Predictor.from_checkpoint(path, device="cpu")
    assert p.attribute_thresholds == {"backpack": 0.3, "gender": 0.4}
    assert p.track_attribute_thresholds == {"backpack": 0.7, "gender": 0.4}
    assert Tracker(p, embeddings="none")._summary(1).thresholds == {"backpack": 0.7,
                                                                     "gender": 0.4}
