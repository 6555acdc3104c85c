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


@pytest.mark.slow  # ~10 s: exports, quantises, scores on three engines, opens four detectors
def test_export_auto_checks_the_detector_on_each_engine_and_auto_follows_it(
        trained, tmp_path, capsys):
    """Issue 38: `export --model DETRUN --auto` scores the detector on ONNX Runtime fp32,
    OpenVINO int8 (quantised on its training frames) and, where the CPU has bf16, OpenVINO
    bf16 on the run's held-out frames; `--detector RUN` runs the fastest engine whose check
    passed for these weights, saying why either way; a changed model's check is stale."""
    import importlib.util

    pytest.importorskip("onnxruntime")
    from personkit.checkpoint import content_hash
    from personkit.cli import main
    from personkit.inference.detectors import OnnxDetector, OpenVinoDetector, open_detector
    from personkit.models.detector import load_person_detector
    from personkit.runtime import has_isa

    run = tmp_path / "run"
    shutil.copytree(trained[0] / "run", run)
    assert main(["export", "--model", str(run), "--auto"]) == 0
    content = json.loads((run / "engine_checks.json").read_text())
    assert content["kind"] == "detector" and content["frames"] == 12  # every frame of tiny-6
    assert content["weights"] == content_hash(load_person_detector(run)[0].state_dict())
    checks = content["checks"]
    ref, int8, bf16 = checks["onnxruntime-fp32"], checks["openvino-int8"], checks["openvino-bf16"]
    assert ref["reference"] and 0 <= ref["AP50"] <= 1 and ref["ms_per_frame"] > 0
    ov = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
    can = has_isa("bf16") and ov
    assert ("passed" in int8) is ov and (run / "engines/detector-int8/model.xml").exists() is ov
    if ov:
        assert_int8_on_the_network_only(run / "engines/detector-int8/model.xml")
    assert ("passed" in bf16) is can and ("skipped" in bf16) is not can
    for record in (int8, bf16):
        if "passed" in record:
            assert record["passed"] == (record["loss_points"] <= 1.0)
            record.update(passed=True, loss_points=0.5, ms_per_frame=ref["ms_per_frame"] / 2)
    int8.update(passed=False, loss_points=13.0)  # bf16, where there is one, is then the pick
    (run / "engine_checks.json").write_text(json.dumps(content))
    capsys.readouterr()
    chosen = open_detector(run, min_score=0.0)
    line = capsys.readouterr().err
    assert type(chosen) is (OpenVinoDetector if can else OnnxDetector)
    assert f"detector auto: {'openvino bf16' if can else 'onnxruntime fp32'}" in line
    frame = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    assert chosen.detect([frame])[0].shape[1] == 5  # x1, y1, x2, y2, score
    assert chosen.name.endswith("(openvino bf16)" if can else "(onnxruntime)")
    if ov:  # int8 passed and fastest: the int8 IR runs, its boxes as the reference's
        int8.update(passed=True, loss_points=0.5, ms_per_frame=ref["ms_per_frame"] / 4)
        (run / "engine_checks.json").write_text(json.dumps(content))
        chosen = open_detector(run, min_score=0.0)
        assert chosen.name.endswith("(openvino int8)") and chosen.precision == "int8"
        assert chosen.detect([frame])[0].shape[1] == 5
    content["weights"] = "another"
    (run / "engine_checks.json").write_text(json.dumps(content))
    assert type(open_detector(run, min_score=0.0)) is OnnxDetector
    assert "another model's" in capsys.readouterr().err
    assert main(["export", "--model", str(run), "--auto"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_the_detector_runs_on_the_fastest_engine_whose_check_passed(tmp_path, monkeypatch):
    """`--detector RUN` reads RUN/engine_checks.json: the fastest of OpenVINO int8 and bf16
    that passed for these weights on this CPU, faster than ONNX Runtime fp32 there, with
    OpenVINO installed, bf16 instructions for bf16 and its file there; each refusal is a line
    that says why."""
    import personkit.inference.detectors as detectors

    passed = {"passed": True, "loss_points": 0.4, "checked": "2026-12-07T17:00:00+00:00"}
    checks = {"weights": "w1", "cpu": "cpu A", "bound": {"max_loss_points": 1.0}, "checks": {
        "onnxruntime-fp32": {"ms_per_frame": 20.0},
        "openvino-int8": {**passed, "ms_per_frame": 8.0},
        "openvino-bf16": {**passed, "loss_points": 0.2, "ms_per_frame": 9.0}}}
    (tmp_path / "engines" / "detector-int8").mkdir(parents=True)
    for file in ("detector.onnx", "detector-int8/model.xml"):
        (tmp_path / "engines" / file).write_bytes(b"model")
    monkeypatch.setattr(detectors, "_has", lambda module: True)
    monkeypatch.setattr("personkit.runtime.has_isa", lambda isa: True)
    monkeypatch.setattr("personkit.runtime.cpu_description", lambda: "cpu A")

    def check(**records) -> tuple[str | None, str]:
        content = {**checks, "checks": {**checks["checks"], **records}}
        (tmp_path / "engine_checks.json").write_text(json.dumps(content))
        return detectors.checked_detector_engine(tmp_path, lambda: "w1")

    assert check() == ("openvino-int8", "AP checked 2026-12-07: 0.40 points lost at most, "
                                        "8.0 ms a frame against 20.0")
    assert check(**{"openvino-int8": {**passed, "ms_per_frame": 10.0}})[0] == "openvino-bf16"
    engine, why = check(**{"openvino-int8": {**passed, "passed": False, "loss_points": 13.8}})
    assert engine == "openvino-bf16"
    (tmp_path / "engines" / "detector-int8" / "model.xml").unlink()
    engine, why = check(**{"openvino-bf16": {**passed, "passed": False, "loss_points": 1.9}})
    assert engine is None
    assert "openvino-int8: " in why and "detector-int8/model.xml is missing" in why
    assert "openvino-bf16: lost 1.90 AP points (bound 1.0)" in why
    engine, why = check(**{"openvino-bf16": {**passed, "ms_per_frame": 25.0}})
    assert engine is None and why == "openvino-bf16 passed but ran no faster (25.0 against " \
                                     "20.0 ms a frame)"
    monkeypatch.setattr("personkit.runtime.has_isa", lambda isa: False)
    engine, why = check(**{"openvino-bf16": {"skipped": "this CPU has no bf16 instructions"}})
    assert engine is None and "openvino-bf16: this CPU has no bf16 instructions" in why
    assert check()[1].endswith("openvino-bf16: this CPU has no bf16 instructions")
    assert detectors.checked_detector_engine(tmp_path, lambda: "w2")[1].endswith(
        "is another model's (its weights changed since)")
    monkeypatch.setattr("personkit.runtime.cpu_description", lambda: "cpu B")
    engine, why = detectors.checked_detector_engine(tmp_path, lambda: "w1")
    assert engine is None and "was checked on another CPU (cpu A; this one: cpu B)" in why
    (tmp_path / "engine_checks.json").unlink()
    assert "`personkit export --model" in detectors.checked_detector_engine(
        tmp_path, lambda: pytest.fail("no check: the weights are not hashed"))[1]



def assert_int8_on_the_network_only(ir) -> None:
    """The detector's int8 IR has int8 inputs only on the backbone's and the head's layers:
    the input transform (resize, normalisation) and the box decoding read fp32 (quantised,
    they cost the built-in detector 13 AP points)."""
    import re

    import openvino as ov

    graph = ov.Core().read_model(str(ir))
    readers = {(t.get_node().get_type_name(), t.get_node().get_friendly_name())
               for op in graph.get_ops() if op.get_type_name() == "FakeQuantize"
               for t in op.output(0).get_target_inputs()}
    valued = {(kind, name) for kind, name in readers if kind != "ShapeOf"}  # shapes only
    assert any(kind == "Convolution" for kind, _ in valued)
    assert all(re.match(r"^/(backbone|head)/", name) for _, name in valued), valued
