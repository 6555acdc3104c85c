"""`personkit predict | export | bench` end to end on tiny models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from personkit.cli import main


@pytest.fixture
def street(tmp_path):
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (160, 120))
    cv2.imwrite(str(tmp_path / "street.jpg"), image)
    (tmp_path / "street.txt").write_text("10,5,50,85,0.9\n60,20,100,110\n")
    return tmp_path / "street.jpg"


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_image_with_boxes(tiny_checkpoint, street, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_checkpoint), str(street), "--out", str(out),
                 "--no-progress", "--save-parts"]) == 0
    records = _lines(out / "results.jsonl")
    assert [r["index"] for r in records] == [0, 1] and records[0]["score"] == 0.9
    assert len(records[0]["keypoints"]) == 16 and "gender" in records[0]["attributes"]
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.shape == (2, 512) and embeddings.dtype == np.float32
    assert [r["embedding_row"] for r in records] == [0, 1]
    assert cv2.imread(str(out / "vis" / "street.png")).shape == (120, 160, 3)
    labels = cv2.imread(str(out / "parts" / "street_0.png"), cv2.IMREAD_UNCHANGED)
    colour = cv2.imread(str(out / "parts" / "street_0_color.png"))
    assert labels.ndim == 2 and labels.max() < 20 and colour.shape == (*labels.shape, 3)
    assert colour.max() > labels.max()  # a palette, not raw ids that look black
    assert cv2.imread(str(out / "parts" / "street_1.png")).shape == (90, 40, 3)


def test_predict_crops_and_mot(tiny_checkpoint, tmp_path):
    seq = tmp_path / "MOT17-09"
    for i in (1, 2):
        (seq / "img1").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), np.full((80, 100, 3), 100, np.uint8))
    (seq / "det").mkdir()
    (seq / "det" / "det.txt").write_text("1,-1,11,11,20,40,0.8\n2,-1,31,21,20,40,0.6\n")
    out = tmp_path / "mot"
    assert main(["predict", "-m", str(tiny_checkpoint), str(seq), "--out", str(out),
                 "--no-progress",
                 "--heads", "reid,pose", "--flip-tta"]) == 0
    records = _lines(out / "results.jsonl")
    assert [r["frame"] for r in records] == [1, 2] and "attributes" not in records[0]
    assert sorted(p.name for p in (out / "vis").iterdir()) == ["000001.png", "000002.png"]
    crops = seq / "img1"  # full frames: refused as crops unless --crops says they are
    assert main(["predict", "-m", str(tiny_checkpoint), str(crops), "--out", str(tmp_path / "c"),
                 "--no-progress", "--no-vis"]) == 2
    assert main(["predict", "-m", str(tiny_checkpoint), str(crops), "--out", str(tmp_path / "c"),
                 "--no-progress", "--no-vis", "--crops"]) == 0
    assert len(_lines(tmp_path / "c" / "results.jsonl")) == 2


def test_the_python_api_takes_a_predictor_and_writes_what_the_command_writes(
        tiny_checkpoint, street, tmp_path):
    """``predict(predictor, ...)`` (issue #33): one predictor for several runs, each run's
    files the same bytes as ``personkit predict``'s."""
    from personkit.inference import Predictor
    from personkit.inference.run import predict

    assert main(["predict", "-m", str(tiny_checkpoint), str(street), "--out", str(tmp_path / "cli"),
                 "--no-progress", "--device", "cpu", "--engine", "torch"]) == 0
    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu")  # torch, as named above
    for run in ("api1", "api2"):
        summary = predict(predictor, street, tmp_path / run, progress=False)
        assert summary["boxes"] == 2
        for name in ("results.jsonl", "embeddings.npy", "vis/street.png"):
            assert (tmp_path / run / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    with pytest.raises(ValueError, match="--detector finds the people itself"):
        predict(predictor, street, tmp_path / "x", crops=True, detector=object())


def test_a_rerun_into_an_earlier_runs_folder_is_refused_or_replaces_it(tiny_checkpoint, street,
                                                                      tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's file")
    argv = ["predict", "-m", str(tiny_checkpoint), str(street), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    (out / "vis" / "stale.png").write_bytes(b"an overlay of another run")
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "vis" / "stale.png").exists() and (out / "results.jsonl").is_file()
    assert (out / "notes.txt").read_text() == "the user's file"


def test_predict_reports_bad_inputs(tiny_checkpoint, street, tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "none.pt"), str(street), "--out", "x"]) == 2
    assert "none.pt" in capsys.readouterr().err
    (tmp_path / "street.txt").write_text("500,500,600,600\n")
    assert main(["predict", "-m", str(tiny_checkpoint), str(street), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert "box 0 has no area" in capsys.readouterr().err


def test_export_command_checks_parity(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "-m", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "parity PASS" in out and "attr_gender" in out


def test_bench_command_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--set", "model.backbone.name=resnet18", "--set", "model.input_size=[64,32]",
            "--set", "model.fpn_channels=32", "--set", "model.seg_channels=16",
            "--batch-sizes", "2", "--warmup", "0", "--repeats", "1",
            "--skip", "onnx,light,openvino,int8,roofline",
            "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "bench.json").read_text())
    models = {(r["model"], r["engine"]) for r in report["rows"] if r["crops_per_s"]}
    assert {("four-task", "torch-eager"), ("reid-only", "torch-eager"),
            ("four-separate", "torch-eager")} <= models
    ratios = report["ratios"][0]
    assert {"four_task_vs_separate", "four_task_vs_reid_only", "four_task_vs_separate_min"} \
        <= set(ratios)
    assert report["settings"]["model"]["backbone"] == "resnet18"
    parts = [c["part"] for c in report["head_costs"]]
    assert parts == ["trunk", "head:reid", "head:attributes", "head:pose", "head:segmentation"]
    assert "| four-task | torch-eager |" in (out / "bench.md").read_text()
