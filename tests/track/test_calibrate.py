"""Calibrations on video track means (issue 34): the synthetic people's labels, the means,
the fitted attribute thresholds and same-person threshold, where they are stored and who
uses them."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from personkit.inference import Predictor
from personkit.synth.appearance import get_identity
from personkit.synth.mot import ID_OFFSET, sequence_person, write_mot_sequence
from personkit.track.calibrate import (
    binary_attributes,
    calibrate_track_attributes,
    calibrate_tracks,
    gt_tracks,
    save_track_calibration,
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


def track_means(predictor, seq, every=1):
    """Per ground-truth id of ``seq``: its track's mean class-1 probabilities."""
    return {t.gt_id: t.attributes for t in gt_tracks(predictor, seq, every)}


def test_a_track_mean_is_the_mean_of_its_visible_frames(cameras, predictor):
    means = track_means(predictor, cameras[0])
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
    halves = track_means(predictor, cameras[0], every=2)
    assert set(halves) <= set(means) and not np.allclose(halves[1], means[1], atol=0)


def predictor_image(seq: Path, frame: int) -> np.ndarray:
    from personkit.data.io import read_image

    return read_image(seq / "img1" / f"{frame:06d}.jpg")


def test_thresholds_fit_track_means_and_an_attribute_without_positives_is_left_out(
        cameras, predictor):
    """Labels that split the tracks by their mean backpack probability away from 0.5: the
    fitted threshold separates them (and is scored on the other half of the identities), and
    the gender, "male" for everyone here, cannot be fitted."""
    tracks = [t for seq in cameras for t in gt_tracks(predictor, seq, 2)]
    means = {(t.sequence, t.gt_id): t.attributes for t in tracks}
    backpack = np.array([p[1] for p in means.values()])
    cut = np.median(backpack)  # the upper half carries one
    assert not cut >= 0.5 > backpack[backpack < cut].max()  # 0.5 would not separate them

    def labels(seq, gid):
        carries = means[(seq, gid)][1] >= cut
        return f"{seq.name}:{gid}", {"backpack": "yes" if carries else "no", "gender": "male"}

    got = calibrate_track_attributes(predictor, tracks, labels)
    assert got["tracks"] == len(means) and got["identities"] == len(means)
    assert got["positives"] == {"gender": 0, "backpack": len(means) // 2}
    assert got["left_out"] == ["gender"] and set(got["thresholds"]) == {"backpack"}
    assert got["changed"] == ["backpack"]  # from the arg-max: no crop threshold here
    t = got["thresholds"]["backpack"]
    assert backpack[backpack < cut].max() < t <= cut
    assert got["mA/backpack"] > 0.5
    with pytest.raises(ValueError, match="nothing to calibrate: no track"):
        calibrate_track_attributes(predictor, [], labels)


def test_the_same_person_threshold_is_fitted_between_cameras_of_the_same_people(
        cameras, predictor, tmp_path):
    """Two cameras of each seed's people (``tiny`` and ``tiny-b``): the threshold of
    ``calibrate_match_threshold`` on the tracks' mean embeddings; with one camera a seed, no
    person is seen twice and there is no threshold (the attributes are still fitted)."""
    from personkit.metrics.matching import calibrate_match_threshold
    from personkit.track.merge import l2_normalise

    second = [write_mot_sequence(tmp_path / f"tiny-b-{s}", "tiny-b", seed=s) for s in range(2)]
    seqs = [*cameras[:2], *second]
    got = calibrate_tracks(predictor, seqs, sequence_person)
    match = got["match"]
    assert match["space"] == "video track means" and match["cameras"] == 4
    assert match["identities"] == 6 and match["tracks"] == len(
        [t for s in seqs for t in gt_tracks(predictor, s, 2)])
    assert match["dataset"] == "tiny, tiny-b (4 cameras)" and match["every"] == 2
    tracks = [t for s in seqs for t in gt_tracks(predictor, s, 2)]
    means = l2_normalise(np.stack([t.embedding for t in tracks]))
    ids = np.array([sequence_person(t.sequence, t.gt_id)[0] for t in tracks])
    cams = np.array([t.sequence.name for t in tracks])
    expected = calibrate_match_threshold(1 - means @ means.T, ids, ids, cams, cams)
    assert match["threshold"] == pytest.approx(expected["threshold"])
    assert match["precision"] == pytest.approx(expected["precision"])
    assert got["attributes"]["tracks"] == len(tracks)
    alone = calibrate_tracks(predictor, cameras[:2], sequence_person)
    assert alone["match"] is None and alone["attributes"]["sequences"] == ["tiny-0", "tiny-1"]
    with pytest.raises(ValueError, match="no ground-truth track in"):
        calibrate_tracks(predictor, [], sequence_person)


def test_track_calibrations_are_stored_kept_and_used_for_tracks(tmp_path):
    """``track_attributes`` and ``track_match`` join the model's record (refused without
    one), survive a new ``personkit eval`` of the same weights; the attribute thresholds
    decide tracks (crops keep their own); the index and galleries keep the Market track
    threshold (``track_match`` is measured, not applied yet: docs/search.md)."""
    from personkit.engine.evaluate import save_match_calibration
    from personkit.index.entries import IndexInfo
    from personkit.track.gallery import gallery_threshold
    from personkit.track.tracker import Tracker

    model = make_model()
    path = save_model(model, tmp_path / "model.safetensors")
    plain = Predictor.from_checkpoint(path, device="cpu")
    found = {"attributes": {"thresholds": {"backpack": 0.7}, "tracks": 12},
             "match": {"threshold": 0.004, "space": "video track means"}}
    with pytest.raises(ValueError, match="no calibration record for model .* run `personkit eval`"):
        save_track_calibration(path, plain, found)
    results = {"market": {"match": {"threshold": 0.01, "tracks": {"threshold": 0.008}},
                          "attributes": {"calibrated": {"thresholds": {"backpack": 0.3,
                                                                       "gender": 0.4}}}}}
    save_match_calibration(results, model, path)
    save_track_calibration(path, plain, found)
    save_match_calibration(results, model, path)  # evaluated again: the fits are kept
    (record,) = json.loads((tmp_path / "calibration.json").read_text()).values()
    assert record["track_attributes"] == found["attributes"] and record["threshold"] == 0.01
    assert record["track_match"] == found["match"]
    p = Predictor.from_checkpoint(path, device="cpu")
    assert p.attribute_thresholds == {"backpack": 0.3, "gender": 0.4}
    assert p.track_attribute_thresholds == {"backpack": 0.7, "gender": 0.4}
    assert Tracker(p, embeddings="none")._summary(1).thresholds == {"backpack": 0.7,
                                                                     "gender": 0.4}
    info = IndexInfo(p.model_id, 8, {}, calibration=p.calibration)
    assert info.same_person_threshold == 0.008
    assert gallery_threshold(p.calibration, None, "m")["threshold"] == 0.008
    save_track_calibration(path, plain, {**found, "match": None})  # no second camera
    p = Predictor.from_checkpoint(path, device="cpu")
    assert "track_match" not in p.calibration and p.calibration["track_attributes"]
