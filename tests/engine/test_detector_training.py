"""`personkit train-detector` (personkit/engine/detector.py) on tiny synthetic sequences: the
run directory, exact resume, COCO AP and held-out seeds (issue #24); the trained detector in
`track`: tests/track/test_detector_tracking.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from personkit.config import ConfigError, detector_config_from_dict
from personkit.engine.detector import batch_indices, train_detector

pytest.importorskip("pycocotools")


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    yield


def tiny(root, **train):
    return detector_config_from_dict({
        "model": {"fpn_channels": 64, "min_size": 96, "max_size": 128},
        "data": {"root": str(root), "train": {"preset": "tiny", "seeds": [5]},
                 "eval": {"preset": "tiny", "seeds": [6], "frame_step": 3}},
        "train": {"iterations": 4, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1,
                  "log_every": 1, **train}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step run on one thread, as every test here (exact resume compares bits)."""
    root = tmp_path_factory.mktemp("det")
    cfg = tiny(root / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scores = train_detector(cfg, root / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, cfg, scores


def test_the_run_directory_holds_a_detector_and_its_ap(trained):
    root, _, scores = trained
    run = root / "run"
    for name in ("run.json", "config.yaml", "log.jsonl", "model.safetensors", "metrics.json",
                 "curves.png"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir()) and len(list((run / "checkpoints").glob("step_*.pt"))) == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_sequences"] == ["tiny-6"] and metrics["images"] == 4
    for key in ("AP", "AP50", "AP75"):
        assert 0.0 <= metrics[key] <= 1.0 and metrics[key] == scores[key]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert {"loss_classification", "loss_bbox_regression", "loss_bbox_ctrness"} <= set(log[0])


def test_resume_continues_exactly(trained, tmp_path):
    """Weights after resuming from the step-2 checkpoint equal the uninterrupted run's."""
    root, cfg, _ = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "checkpoints" / "step_00000004.pt").unlink()
    (run / "model.safetensors").unlink()
    train_detector(cfg, run, resume="auto", progress=False)
    from personkit.checkpoint import read_weights

    a, _ = read_weights(root / "run" / "model.safetensors")
    b, _ = read_weights(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run_ids = {json.loads((d / "run.json").read_text())["run_id"] for d in (root / "run", run)}
    assert len(run_ids) == 1  # the resumed run keeps its identity


def test_a_new_run_over_another_is_refused(trained):
    root, cfg, _ = trained
    with pytest.raises(ValueError, match="holds checkpoints of another run"):
        train_detector(cfg, root / "run", progress=False)


def test_batches_are_a_pure_function_of_seed_and_step():
    first = [batch_indices(0, s, 4, 10) for s in range(5)]
    assert first == [batch_indices(0, s, 4, 10) for s in range(5)]
    epoch0 = sorted(i for b in first[:2] for i in b) + sorted(first[2][:2])
    assert sorted(epoch0) == list(range(10))  # one epoch covers every frame once
    assert batch_indices(1, 0, 4, 10) != first[0]


def test_held_out_seeds_and_channels_are_checked():
    with pytest.raises(ConfigError, match="also training seeds"):
        detector_config_from_dict({"data": {"train": {"seeds": [1, 2]}, "eval": {"seeds": [2]}}})
    with pytest.raises(ConfigError, match="multiple of 32"):
        detector_config_from_dict({"model": {"fpn_channels": 80}})


def test_the_cli_trains_from_a_config_with_overrides(tmp_path, capsys):
    from personkit.cli import main

    config = tmp_path / "det.yaml"
    config.write_text("model: {fpn_channels: 64, min_size: 96, max_size: 128}\n"
                      "data: {train: {preset: tiny, seeds: [5]}, "
                      "eval: {preset: tiny, seeds: [6], frame_step: 6}}\n")
    assert main(["train-detector", str(config), "--out", str(tmp_path / "run"),
                 f"data.root={tmp_path / 'data'}", "train.iterations=1", "train.batch_size=1",
                 "--no-progress"]) == 0
    assert "AP50" in capsys.readouterr().out and (tmp_path / "data" / "tiny-5").is_dir()


def test_the_detector_exports_to_onnx_with_a_parity_check(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from personkit.cli import main
    from personkit.inference.detectors import open_detector

    root, _, _ = trained
    path = tmp_path / "det.onnx"
    assert main(["export", "--model", str(root / "run"), "--onnx", str(path)]) == 0
    assert "detector parity PASS" in capsys.readouterr().out
    onnx_det, torch_det = (open_detector(p, min_score=0.0) for p in (path, root / "run"))
    assert onnx_det.layout == "torchvision"
    frame = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    a, b = torch_det.detect([frame])[0], onnx_det.detect([frame])[0]
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * 200
    assert main(["export", "--model", str(root / "run"), "--onnx", str(path)]) == 2
    assert "--overwrite" in capsys.readouterr().err  # an existing export is not replaced
    assert main(["export", "--model", str(root / "run"), "--onnx", str(tmp_path / "b.onnx"),
                 "--openvino", str(tmp_path / "ov")]) == 2
    assert "exports to ONNX only" in capsys.readouterr().err
