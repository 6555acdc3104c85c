"""`track` and `predict` with `--detector` (issue #24): the people come from a detector run on
each frame, with no det.txt anywhere: an ONNX detector file and a torchvision detector with
random weights, on a video, a MOT sequence's images and a folder of frames."""

import json

import numpy as np
from fake_detectors import torchvision_layout

from personkit.cli import main


def _first_frame_people(sequence):
    gt = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = gt[gt[:, 0] == 1]
    boxes = np.c_[rows[:, 2:4] - 1, rows[:, 2:4] - 1 + rows[:, 4:6]]
    return boxes.round(1).tolist()


def _video(sequence, path):
    from personkit.inference.sources import read_image
    from personkit.track.io import VideoWriter

    writer = VideoWriter(path, 10)
    for image in sorted((sequence / "img1").iterdir()):
        writer.write(read_image(image))
    writer.close()
    return path


def test_track_a_video_with_an_onnx_detector(extra, sequence, run_dir, tmp_path, capsys):
    people = _first_frame_people(sequence)
    detector = torchvision_layout(tmp_path / "det.onnx", people, [0.9] * len(people))
    video = _video(sequence, tmp_path / "in.mp4")
    out = tmp_path / "out"
    assert main(["track", "--model", str(run_dir), str(video), "--detector", str(detector), "--out",
                 str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector"] == {"detector": "torchvision:det.onnx", "min_score": 0.5,
                                   "dropped_non_finite": 0}
    assert summary["detections"] == len(people) * summary["frames"]
    rows = np.loadtxt(out / "results.txt", delimiter=",", ndmin=2)
    assert len(np.unique(rows[:, 1])) == len(people)  # the same boxes: the same tracks
    assert "people found by torchvision:det.onnx" in capsys.readouterr().out
    assert main(["track", "--model", str(run_dir), str(video), "--detector", str(detector),
                 "--detections", str(sequence / "det" / "det.txt"), "--out", str(out)]) == 2


def test_track_a_sequence_with_a_random_torchvision_detector_and_score_it(
        extra, sequence, run_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["track", "--model", str(run_dir), str(sequence), "--detector",
                 "fasterrcnn_mobilenet_v3_large_320_fpn:random", "--detector-score", "0.05",
                 "--heads", "reid", "--eval", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector"]["detector"] == "fasterrcnn_mobilenet_v3_large_320_fpn"
    metrics = json.loads((out / "metrics.json").read_text())  # random weights: any score
    assert 0.0 <= metrics["HOTA"] <= 1.0 and metrics["IDSW"] >= 0


def test_predict_and_track_a_folder_of_frames_with_a_detector(extra, sequence, run_dir,
                                                               tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted((sequence / "img1").iterdir())[:4]:
        (frames / image.name).write_bytes(image.read_bytes())
    people = _first_frame_people(sequence)
    detector = str(torchvision_layout(tmp_path / "det.onnx", people + [[1, 1, 1, 5]],
                                      [0.9] * len(people) + [0.9]))  # one box with no area
    out = tmp_path / "predict"
    assert main(["predict", "--model", str(run_dir), str(frames), "--detector", detector, "--out",
                 str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 * len(people)
    assert [r["box"] for r in records[:len(people)]] == [
        [round(v, 1) for v in box] for box in people]
    assert json.loads((out / "summary.json").read_text())["input"] == "frames"
    assert main(["track", "--model", str(run_dir), str(frames), "--detector", detector, "--out",
                 str(tmp_path / "track"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "track" / "summary.json").read_text())["frames"] == 4
    capsys.readouterr()
    assert main(["predict", "--model", str(run_dir), str(frames), "--detector", detector, "--crops",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--detector finds the people itself" in capsys.readouterr().err


def test_track_a_video_with_a_trained_detector_and_score_it(extra, run_dir, tmp_path):
    """A synthetic video, no det.txt anywhere, a `train-detector` run as the detector, and
    --eval against the ground truth beside the video (gt/gt.txt in its folder)."""
    import shutil

    from personkit.config import detector_config_from_dict
    from personkit.engine.detector import train_detector
    from personkit.synth.mot import write_mot_sequence

    cfg = detector_config_from_dict({
        "model": {"fpn_channels": 64, "min_size": 96, "max_size": 128},
        "data": {"root": str(tmp_path / "data"), "train": {"preset": "tiny", "seeds": [5]},
                 "eval": {"preset": "tiny", "seeds": [6], "frame_step": 6}},
        "train": {"iterations": 2, "batch_size": 2, "warmup_steps": 1}})
    train_detector(cfg, tmp_path / "detector", progress=False)
    seq = write_mot_sequence(tmp_path / "seq", "tiny", seed=7)
    (tmp_path / "clip" / "gt").mkdir(parents=True)
    shutil.copy(seq / "gt" / "gt.txt", tmp_path / "clip" / "gt" / "gt.txt")
    video = _video(seq, tmp_path / "clip" / "clip.mp4")
    out = tmp_path / "out"
    assert main(["track", "-m", str(run_dir), str(video), "--detector", str(tmp_path / "detector"),
                 "--detector-score", "0.0", "--eval", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # on the CPU a trained detector runs on ONNX Runtime, exported in memory
    assert summary["detector"]["detector"] == "personkit:detector (onnxruntime)"
    assert summary["frames"] == 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["HOTA"] <= 1.0  # two training steps: any score, but scored
    _same_detections_on_both_engines(tmp_path / "detector", seq)


def _same_detections_on_both_engines(run, seq):
    """ONNX Runtime (the CPU default) and PyTorch (engine="torch") find the same boxes, within
    the model's float32 rounding bound (boxes relative to the frame size), apart from boxes
    whose score is within that bound of the threshold."""
    from personkit.inference.detectors import open_detector
    from personkit.inference.sources import read_image
    from personkit.models.detector import load_person_detector
    from personkit.models.numerics import fp32_tolerance

    frames = [read_image(p) for p in sorted((seq / "img1").iterdir())[::3]]
    fast = open_detector(run, "cpu", 0.05)
    slow = open_detector(run, "cpu", 0.05, engine="torch")
    assert fast.name.endswith("(onnxruntime)") and not slow.name.endswith("(onnxruntime)")
    tol = fp32_tolerance(load_person_detector(run)[0])
    for frame, a, b in zip(frames, fast.detect(frames), slow.detect(frames), strict=True):
        a, b = (x[x[:, 4] > 0.05 + tol] for x in (a, b))
        assert len(a) == len(b)
        scale = np.array([max(frame.shape[:2])] * 4 + [1.0])
        assert np.all(np.abs(a - b) / scale <= tol)


def test_demo_video_trains_the_detector_and_tracks_a_held_out_video(extra, run_dir, tmp_path,
                                                                    capsys):
    """`personkit demo --video` on tiny sequences and a 2-step detector: with the demo's
    four-task model in OUT/run the people are understood; the detector run is kept."""
    import shutil

    out = tmp_path / "demo"
    shutil.copytree(run_dir, out / "run")
    tiny = ["model.min_size=96", "model.max_size=128", "data.train.preset=tiny",
            "data.train.seeds=[5]", "data.eval.preset=tiny", "data.eval.seeds=[6]",
            "data.eval.frame_step=6", "train.iterations=2", "train.batch_size=2",
            "train.warmup_steps=1"]
    assert main(["demo", "--video", "--out", str(out), *tiny]) == 0
    printed = capsys.readouterr().out
    assert "tracking tiny-6 (12 frames): HOTA" in printed
    assert f"understood by {out / 'run'}" in printed
    result = json.loads((out / "video_demo.json").read_text())
    assert result["frames"] == 12 and 0.0 <= result["detector"]["AP50"] <= 1.0
    assert (out / "video" / "video.mp4").stat().st_size > 1000
    assert json.loads((out / "video" / "summary.json").read_text())["embeddings"] == "personkit"


def test_a_detector_that_finds_nobody_warns_once_and_the_speed_line_adds_up(
        extra, sequence, run_dir, tmp_path, capsys):
    """Issue #35, item 4: no person in the whole source is one warning (not a silent empty
    run), the speed line never divides by zero people, and its stages (network, tracker,
    write, waiting for the next frame, other) account for the whole wall time; decoding and
    detecting ran alongside, in the reading thread (issue 38), and are reported apart."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for image in sorted((sequence / "img1").iterdir())[:3]:
        (frames / image.name).write_bytes(image.read_bytes())
    detector = str(torchvision_layout(tmp_path / "det.onnx", [[10, 10, 40, 90]], [0.2]))
    out = tmp_path / "out"
    assert main(["track", "--model", str(run_dir), str(frames), "--detector", detector,
                 "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("found no person in any of the 3 frames") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detections"] == 0 and "score >= 0.5" in summary["warning"]
    secs = summary["seconds"]
    assert set(secs) == {"total", "waiting", "network", "tracker", "write", "other"}
    alongside = summary["seconds_alongside"]
    assert set(alongside) == {"decode", "detect"} and min(alongside.values()) > 0
    assert abs(sum(v for k, v in secs.items() if k != "total") - secs["total"]) < 0.01
    line = next(x for x in captured.out.splitlines() if "frames/s" in x)
    assert "per frame: waiting" in line and "inf" not in line
    assert "; reading frames alongside: decode" in line and "detect" in line
