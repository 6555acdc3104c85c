"""`personkit track` end to end on a tiny synthetic sequence, the per-track merging, the
gallery bank, the synthetic MOT writer and the errors on bad input (docs/tracking.md)."""

import json
import shutil
import sys

import numpy as np
import pytest

from personkit.cli import main
from personkit.inference.predictor import AttributePrediction, PersonResult
from personkit.synth.mot import get_mot_preset, write_mot_sequence
from personkit.track.merge import TrackObservation, TrackSummary


@pytest.fixture(scope="module")
def tracked(extra, sequence, run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("track")
    rc = main(["track", "-m", str(run_dir), str(sequence), "--out", str(out), "--eval",
               "--video-out",
               "--keypoints", "--save-parts", "--no-progress"])
    assert rc == 0
    return out


def test_track_json_has_attribute_summaries(tracked):
    data = json.loads((tracked / "tracks.json").read_text())
    assert data["tracks"], "no tracks"
    for t in data["tracks"]:
        assert t["first_frame"] <= t["last_frame"] and t["length"] == len(t["frames"])
        assert t["attributes"], f"track {t['track_id']} has no attribute summary"
        for summary in t["attributes"].values():
            assert 0.5 <= summary["confidence"] <= 1.0 or len(t["frames"]) > 1
            assert 0.0 < summary["agreement"] <= 1.0 and summary["frames"] >= 1
        assert 0.0 < t["embedding_consistency"] <= 1.0 + 1e-4
        frame = t["frames"][0]
        assert len(frame["keypoints"]) == 16 and (tracked / frame["parts"]).is_file()
    bank = np.load(tracked / "track_embeddings.npy")
    assert bank.shape[0] == len(data["tracks"])


def test_results_are_mot_rows_of_the_tracks(tracked, sequence):
    rows = np.loadtxt(tracked / "results.txt", delimiter=",", ndmin=2)
    tracks = json.loads((tracked / "tracks.json").read_text())["tracks"]
    assert rows.shape[1] == 10 and len(rows) == sum(t["length"] for t in tracks)
    assert set(rows[:, 1].astype(int)) == {t["track_id"] for t in tracks}
    assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= get_mot_preset("tiny").frames


def test_trackeval_scores_are_computed(tracked):
    metrics = json.loads((tracked / "metrics.json").read_text())
    for key in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["IDSW"] >= 0 and metrics["HOTA"] > 0.2  # detections come from the gt


def test_video_is_written_and_reads_back(tracked):
    import av

    preset = get_mot_preset("tiny")
    with av.open(str(tracked / "video.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == preset.frames
    assert frames[0].shape == (preset.height, preset.width, 3)
    assert frames[0].std() > 5  # a picture, not a blank


def test_gallery_matches_tracks_of_an_earlier_run(tracked, sequence, run_dir, tmp_path, capsys):
    rc = main(["track", "-m", str(run_dir), str(sequence), "--out", str(tmp_path), "--no-progress",
               "--gallery", str(tracked / "gallery.json"), "--match-threshold", "0.001"])
    assert rc == 0
    matches = json.loads((tmp_path / "gallery_matches.json").read_text())
    assert matches and all(m["match"] is not None for m in matches)
    # the same frames give the same tracks: each matches its own earlier self at distance ~0
    assert all(m["match"]["track_id"] == m["track_id"] for m in matches)
    assert all(m["match"]["distance"] < 1e-4 for m in matches)
    out = capsys.readouterr().out
    assert "matches tiny-0:" in out and "threshold 0.0010 (--match-threshold)" in out


def test_gallery_threshold_defaults_to_the_models_calibrated_one(tracked, sequence, run_dir,
                                                                 tmp_path, capsys):
    """Issue #23 item 1: no guessed default. Without a calibration for these weights, the
    command says how to get one, before tracking; with one, it is used and reported."""
    from personkit.inference import Predictor
    from personkit.models.identity import write_calibration

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    args = ["track", "--model", str(run), str(sequence), "--out", str(tmp_path / "out"),
            "--no-progress", "--gallery", str(tracked / "gallery.json"), "--overwrite"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no calibrated same-person threshold" in err and "personkit eval" in err
    assert not (tmp_path / "out" / "results.txt").exists()
    identity = Predictor.from_checkpoint(run, "cpu").model_id
    write_calibration(run, "0123456789abcdef", {"threshold": 1.5})  # other weights: ignored
    write_calibration(run, identity, {"threshold": 1e-9, "precision": 0.99, "recall": 0.5,
                                      "stranger_accept": 0.01, "dataset": "market"})
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["match_threshold"] == {"threshold": 1e-9, "source": "calibrated",
                                          "space": "crops", "dataset": "market",
                                          "precision": 0.99, "recall": 0.5,
                                          "stranger_accept": 0.01}
    # the same frames again, but at distance ~1e-7, above the calibrated 1e-9: no match
    assert all(m["match"] is None or m["match"]["distance"] <= 1e-9
               for m in summary["gallery_matches"])
    assert "calibrated on market (crops): precision 0.990, recall 0.500" in capsys.readouterr(
    ).out
    write_calibration(run, identity, {"threshold": 1e-9, "dataset": "market", "tracks": {
        "threshold": 2e-9, "space": "track means", "precision": 0.98, "recall": 0.6,
        "stranger_accept": 0.009}})  # a bank holds track means: their threshold is used
    assert main(args) == 0
    used = json.loads((tmp_path / "out" / "summary.json").read_text())["match_threshold"]
    assert used["threshold"] == 2e-9 and used["space"] == "track means"
    assert "(track means): precision 0.980" in capsys.readouterr().out
    assert main([*args, "--match-threshold", "3"]) == 2  # a cosine distance lies in [0, 2]


def test_video_source_with_detections(extra, sequence, run_dir, tmp_path):
    from personkit.inference.sources import read_image
    from personkit.track.io import VideoWriter

    writer = VideoWriter(tmp_path / "in.mp4", 10)
    for path in sorted((sequence / "img1").iterdir()):
        writer.write(read_image(path))
    writer.close()
    rc = main(["track", "--model", str(run_dir), str(tmp_path / "in.mp4"), "--detections",
               str(sequence / "det" / "det.txt"), "--out", str(tmp_path / "out"),
               "--embeddings", "none", "--tracker", "bytetrack", "--no-progress"])
    assert rc == 0
    rows = np.loadtxt(tmp_path / "out" / "results.txt", delimiter=",", ndmin=2)
    assert len(rows) > 0


def test_merged_attributes_are_confidence_weighted():
    def obs(frame, label, p, score):
        r = PersonResult(box=(0, 0, 1, 1), attributes={"gender": AttributePrediction(label, p)},
                         embedding=np.array([float(frame), 1.0], np.float32))
        return TrackObservation(frame, (0, 0, 1, 1), score, 0, r)

    t = TrackSummary(1, [obs(1, "male", 0.9, 1.0), obs(2, "female", 0.6, 0.5),
                         obs(3, "male", 0.7, 1.0)])
    g = t.attributes()["gender"]
    assert g["label"] == "male" and g["frames"] == 3
    assert g["confidence"] == pytest.approx(round(1.6 / 1.9, 4))
    assert g["agreement"] == pytest.approx(round(2 / 3, 4))
    unit = [np.array([f, 1.0]) / np.hypot(f, 1.0) for f in (1, 2, 3)]
    # a float32 mean of three float32 unit vectors (components >= 0.3): each rounding is
    # 2^-24 relative, a few of them stay well under 1e-6
    np.testing.assert_allclose(t.embedding(), np.mean(unit, axis=0), rtol=1e-6)


def test_merged_probabilities_decide_by_the_calibrated_threshold():
    """Issue #34: with class probabilities, a track averages them (weighted by detection
    score) and decides on the mean as the predictor does: a binary attribute by its
    calibrated threshold, the others by the arg-max; ``positive`` is the mean probability of
    class 1, what ``--where "backpack>=0.3"`` reads."""
    def frame(t, score, p_yes, colours):
        attrs = {"backpack": AttributePrediction("yes" if p_yes >= 0.25 else "no",
                                                 max(p_yes, 1 - p_yes), (1 - p_yes, p_yes)),
                 "upcolor": AttributePrediction("red", max(colours), tuple(colours))}
        return TrackObservation(t, (0, 0, 10, 20), score, 0, PersonResult(
            box=(0, 0, 10, 20), attributes=attrs))

    track = TrackSummary(1, [frame(1, 1.0, 0.1, (0.2, 0.8, 0.0)),
                             frame(2, 0.5, 0.7, (0.6, 0.4, 0.0)),
                             frame(3, 0.5, 0.3, (0.5, 0.5, 0.0))],
                         classes={"backpack": ("no", "yes"), "upcolor": ("black", "red", "blue")},
                         thresholds={"backpack": 0.25})
    merged = track.attributes()
    p_yes = (1.0 * 0.1 + 0.5 * 0.7 + 0.5 * 0.3) / 2.0  # 0.3: at or above the threshold 0.25
    assert merged["backpack"]["label"] == "yes" and merged["backpack"]["frames"] == 3
    assert merged["backpack"]["positive"] == pytest.approx(p_yes, abs=1e-4)
    assert merged["backpack"]["confidence"] == pytest.approx(p_yes, abs=1e-4)
    assert merged["backpack"]["agreement"] == pytest.approx(round(2 / 3, 4))
    red = (0.8 + 0.5 * 0.4 + 0.5 * 0.5) / 2.0
    assert merged["upcolor"]["label"] == "red" and "positive" not in merged["upcolor"]
    assert merged["upcolor"]["confidence"] == pytest.approx(red, abs=1e-4)
    untuned = TrackSummary(1, track.observations, classes=track.classes)
    assert untuned.attributes()["backpack"]["label"] == "no"  # 0.3 < 0.5: the arg-max


def test_synthetic_mot_is_deterministic_with_persistent_ids(tmp_path):
    a = write_mot_sequence(tmp_path / "a", "tiny", seed=3)
    b = write_mot_sequence(tmp_path / "b", "tiny", seed=3)
    for rel in ("gt/gt.txt", "det/det.txt", "img1/000001.jpg"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    gt = np.loadtxt(a / "gt" / "gt.txt", delimiter=",", ndmin=2)
    preset = get_mot_preset("tiny")
    assert gt.shape[1] == 9 and set(gt[:, 1].astype(int)) <= set(range(1, preset.people + 1))
    assert ((gt[:, 8] >= 0) & (gt[:, 8] <= 1)).all()
    for tid in np.unique(gt[:, 1]):  # each identity is present in one unbroken span
        frames = gt[gt[:, 1] == tid, 0]
        assert np.array_equal(frames, np.arange(frames.min(), frames.max() + 1))
    det = np.loadtxt(a / "det" / "det.txt", delimiter=",", ndmin=2)
    assert (det[:, 4] > 0).all() and ((det[:, 6] > 0) & (det[:, 6] <= 1)).all()
    c = write_mot_sequence(tmp_path / "c", "tiny", seed=4)
    assert (c / "det/det.txt").read_bytes() != (a / "det/det.txt").read_bytes()


# ------------------------------------------------------------------------------ bad input


def _copy_sequence(sequence, dst):
    import shutil

    shutil.copytree(sequence, dst)
    return dst


def test_bad_det_row_names_file_and_line(extra, sequence, run_dir, tmp_path, capsys):
    seq = _copy_sequence(sequence, tmp_path / "seq")
    det = seq / "det" / "det.txt"
    lines = det.read_text().splitlines()
    lines[2] = "3,-1,10,20,abc,40,0.9,-1,-1,-1"
    det.write_text("\n".join(lines) + "\n")
    assert main(["track", "--model", str(run_dir), str(seq), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{det}:3" in err and "abc" in err


def test_det_row_without_area_is_an_error(tmp_path):
    from personkit.data.mot import read_detections

    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,20,30,40,0.9\n2,-1,10,20,0,40,0.9\n")
    with pytest.raises(ValueError, match=r"det.txt:2: box width and height"):
        read_detections(path)


def test_missing_frames_name_the_folder_and_frames(extra, sequence, run_dir, tmp_path, capsys):
    seq = _copy_sequence(sequence, tmp_path / "seq")
    (seq / "img1" / "000005.jpg").unlink()
    assert main(["track", "--model", str(run_dir), str(seq), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "img1" in err and "frame numbers 5" in err


def test_undecodable_video_names_the_file(extra, sequence, run_dir, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert main(["track", "--model", str(run_dir), str(bad), "--detections",
                 str(sequence / "det" / "det.txt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot decode video" in err and str(bad) in err


def test_model_without_reid_head_is_refused(extra, run_dir):
    from personkit.inference import Predictor
    from personkit.track import Tracker

    predictor = Predictor.from_checkpoint(run_dir, heads=("attributes", "pose"))
    with pytest.raises(ValueError, match="ReID head"):
        Tracker(predictor, "deepocsort", "personkit")
    Tracker(predictor, "deepocsort", "none")  # motion only needs no embedding


def test_missing_extra_names_the_install_command(sequence, run_dir, tmp_path, monkeypatch,
                                                  capsys):
    monkeypatch.setitem(sys.modules, "boxmot", None)  # import boxmot now raises ImportError
    assert main(["track", "--model", str(run_dir), str(sequence), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'boxmot'" in err and "pip install --no-deps boxmot==25.0.0" in err


def test_crowded_frames_rasterise_past_254_primitives():
    # The crossing preset puts more than 254 primitives in some frames (seed 2 did).
    from personkit.synth.render import object_prim, rasterise

    prims = [object_prim(np.array([[k % 30, k // 30], [k % 30 + 1, k // 30],
                                   [k % 30 + 1, k // 30 + 1], [k % 30, k // 30 + 1]]),
                         (1, 2, 3), 0) for k in range(300)]
    ids, ordered = rasterise(prims, [0.0], 12, 32)
    assert ids.dtype == np.uint16 and len(ordered) == 300
    assert ids.max() == 300 and len(np.unique(ids[ids > 0])) == 300


def test_a_bank_of_another_model_is_refused_before_tracking(tracked, sequence, run_dir,
                                                            tmp_path, capsys):
    """Banks carry the identity of their embedding space (issue #22, items 4 and 13)."""
    bank = json.loads((tracked / "gallery.json").read_text())
    assert len(bank["model"]) == 16
    other = {**bank, "model": "0123456789abcdef"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    out = tmp_path / "out"
    for path, text in ((tmp_path / "other.json", "0123456789abcdef"),
                       (tracked / "track_embeddings.npy", "give the gallery.json"),
                       (tmp_path / "missing.json", "missing.json")):
        assert main(["track", "-m", str(run_dir), str(sequence), "--out", str(out), "--no-progress",
                     "--gallery", str(path)]) == 2
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err, err
        assert not (out / "results.txt").exists()  # refused before any frame was tracked


def test_a_rerun_is_refused_then_replaces_the_earlier_runs_outputs(extra, sequence, run_dir,
                                                                    tmp_path, capsys):
    """No metrics.json of an earlier run beside new results (issue #22, item 10); an earlier
    run's results are refused without --overwrite, the rule of every command (issue #35)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's file")
    track = ["track", "--model", str(run_dir), str(sequence), "--out", str(out),
             "--embeddings", "none", "--no-progress"]
    assert main([*track, "--eval"]) == 0
    assert (out / "metrics.json").is_file()
    capsys.readouterr()
    assert main(track) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "results.txt" in err and "Traceback" not in err, err
    assert (out / "metrics.json").is_file()  # refused: nothing removed
    assert main([*track, "--overwrite"]) == 0
    assert not (out / "metrics.json").exists() and (out / "results.txt").is_file()
    assert (out / "notes.txt").read_text() == "the user's file"
    assert "replaced an earlier run's results" in capsys.readouterr().err


def test_a_box_outside_the_frame_is_skipped_naming_its_line(extra, sequence, run_dir, tmp_path,
                                                            capsys):
    """Real det.txt files hold boxes outside the image: each is left out, named by file and
    line, instead of stopping the run (issue #22, item 14)."""
    import shutil

    seq = tmp_path / "seq"
    shutil.copytree(sequence, seq)
    det = seq / "det" / "det.txt"
    lines = det.read_text().splitlines()
    det.write_text("\n".join([*lines, "2,-1,5000,5000,40,80,0.9,-1,-1,-1"]) + "\n")
    assert main(["track", "--model", str(run_dir), str(seq), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"skipped 1 box(es) with no area inside the frame, e.g. {det}:{len(lines) + 1}" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped_boxes"] == 1


def test_an_out_that_is_a_file_is_named(extra, sequence, run_dir, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("the user's file")
    assert main(["track", "--model", str(run_dir), str(sequence), "--out", str(taken),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(taken) in err and len(err.splitlines()) == 1
    assert taken.read_text() == "the user's file"


def test_track_in_bf16_matches_the_fp32_tracks(tracked, sequence, run_dir, tmp_path):
    """``personkit track --precision bf16`` (issue #27): every track of the bf16 run finds an
    fp32 track of the same frames within the bf16 bound: cosine distance <= tol**2 for
    relative errors <= tol (personkit.models.numerics.bf16_tolerance)."""
    from personkit.models.loading import load_model
    from personkit.models.numerics import bf16_tolerance

    tol = bf16_tolerance(load_model(run_dir, "cpu"))
    rc = main(["track", "-m", str(run_dir), str(sequence), "--out", str(tmp_path), "--no-progress",
               "--precision", "bf16", "--gallery", str(tracked / "gallery.json"),
               "--match-threshold", f"{tol ** 2:.6f}"])
    assert rc == 0
    matches = json.loads((tmp_path / "gallery_matches.json").read_text())
    assert matches and all(m["match"] is not None for m in matches)
    assert all(m["match"]["distance"] <= tol ** 2 for m in matches)
    # bf16 really ran: the track embeddings differ from fp32's, within the bound
    from personkit.models.numerics import relative_difference

    fp32, bf16 = (np.load(d / "track_embeddings.npy") for d in (tracked, tmp_path))
    assert fp32.shape == bf16.shape and 0 < relative_difference(fp32, bf16) <= tol
