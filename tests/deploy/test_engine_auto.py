"""``--engine auto`` (issue 38, item 1): the engine it picks with and without bf16 (the CPU
flags and the installed libraries are passed in, not read from this machine), the int8 and
bf16 engines it refuses (unchecked, failing, stale, another model's export, an unreadable
check file) with the exact fallback it prints, the engine the outputs record, and
``personkit export --auto`` writing the checks it reads (docs/inference.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import make_model, save_model  # tests/tiny_models.py

from personkit.deploy.auto import (
    CHECKS_FILE,
    CHECKS_VERSION,
    EXPORTS_DIR,
    VARIANTS,
    choose,
    export_path,
    open_predictor,
)
from personkit.deploy.checks import same_person_agreement, score_losses

BF16 = {"avx512f", "avx512_bf16", "amx_bf16"}  # a Sapphire Rapids
NO_BF16 = {"avx2", "avx512f", "avx512_vnni"}  # an Ice Lake: int8 instructions, no bf16
ALL = {"onnx", "onnxruntime", "openvino", "nncf"}
GOOD = {"worst_loss_points": 0.3, "worst": "lip.pose.Mean", "reid": True,
        "same_person_agreement": 0.998, "checked": "2026-12-07T10:00:00+00:00"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_model(make_model(), tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def _run(tmp_path: Path, records: dict[str, dict], weights: str = "w1") -> Path:
    """A run folder with ``records`` in its check file and every export file present."""
    run = tmp_path / "run"
    run.mkdir()
    for v in VARIANTS:
        if v.export:
            export_path(run, v).mkdir(parents=True, exist_ok=True)
    checks = {key: {"variant": key, "exact": key.endswith("fp32"), "parity_ok": True,
                    "weights": weights, **r} for key, r in records.items()}
    (run / CHECKS_FILE).write_text(json.dumps({"version": CHECKS_VERSION, "checks": checks}))
    return run


def _pick(run, flags, installed=ALL, weights="w1"):
    choice = choose(run, "cpu", flags=flags, installed=installed, weights=lambda: weights)
    return choice, choice.line(choice.ranked[0])


def test_auto_picks_bf16_where_the_cpu_has_it_int8_where_not(tmp_path):
    run = _run(tmp_path, {**{k: GOOD for k in ("openvino-bf16", "openvino-int8-bf16",
                                               "openvino-int8")}, "onnxruntime-fp32": {}})
    choice, line = _pick(run, BF16)
    assert choice.ranked[0].key == "openvino-bf16" and choice.not_used == []
    assert line.startswith("engine auto: openvino bf16 (accuracy checked 2026-12-07 on this "
                           "model: worst loss 0.30 points (lip.pose.Mean), 99.80 % of")
    assert choice.files["openvino-bf16"] == run / EXPORTS_DIR / "openvino"
    choice, line = _pick(run, NO_BF16)  # checked elsewhere: this CPU has no bf16
    assert choice.ranked[0].key == "openvino-int8"
    assert "openvino bf16, openvino int8 + bf16: this CPU has no bf16 instructions" in line
    assert [v.key for v in choice.ranked][-2:] == ["onnxruntime-fp32", "torch-fp32"]


def test_without_checks_auto_runs_torch_and_says_how_to_enable_more(tmp_path):
    """Nothing is exported or checked while a command starts: eager torch runs (exact)."""
    run = tmp_path / "plain"
    run.mkdir()
    choice, line = _pick(run, BF16)
    assert [v.key for v in choice.ranked] == ["torch-fp32"] and choice.files == {}
    assert line == ("engine auto: torch fp32 (exact: eager torch fp32); not used: openvino "
                    "bf16, openvino int8 + bf16, openvino int8, onnxruntime fp32: not exported "
                    f"and checked for this model yet; to check and use the faster engines: "
                    f"personkit export --model {run} --auto")
    choice, line = _pick(run, NO_BF16)
    assert "openvino int8, onnxruntime fp32: not exported" in line and "bf16" not in line
    choice, line = _pick(run, BF16, installed={"onnx", "onnxruntime"})  # no OpenVINO
    assert "openvino int8: openvino is not installed (pip install 'personkit[openvino]'" in line
    assert "onnxruntime fp32: not exported and checked" in line and choice.hint is not None
    choice, line = _pick(run, BF16, installed=())
    assert "onnxruntime fp32: onnxruntime is not installed (pip install " in line
    assert choice.hint is None  # export --auto cannot help before an engine is installed


def test_failing_stale_and_unreadable_checks_are_refused_with_a_printed_fallback(tmp_path):
    run = _run(tmp_path, {"openvino-bf16": {**GOOD, "worst_loss_points": 1.4,
                                            "worst": "mpii.pose.Mean"},
                          "openvino-int8-bf16": {**GOOD, "same_person_agreement": 0.985},
                          "openvino-int8": {**GOOD, "weights": "old-weights-1234"},
                          "onnxruntime-fp32": {}}, weights="new-weights-5678")
    choice, line = _pick(run, BF16, weights="new-weights-5678")
    assert choice.ranked[0].key == "onnxruntime-fp32"
    assert ("openvino bf16: it failed its accuracy check: it lost 1.40 points on "
            "mpii.pose.Mean against fp32 (bound 1)") in line
    assert "openvino int8 + bf16: it failed its accuracy check: it changed 1.50 % of" in line
    assert ("openvino int8: its accuracy check is stale: made for weights old-weights-, the "
            "model's are now new-weights-") in line
    assert line.endswith(f"personkit export --model {run} --auto --overwrite")
    (run / CHECKS_FILE).write_text("{not json")
    choice, line = _pick(run, BF16)
    assert [v.key for v in choice.ranked] == ["torch-fp32"]
    assert "engine_checks.json is unreadable" in line and line.endswith("--auto --overwrite")


def test_fastest_measured_here_wins_and_a_gpu_runs_torch(tmp_path, monkeypatch):
    from personkit import runtime

    here = {"cpu": runtime.cpu_description()}
    run = _run(tmp_path, {"openvino-bf16": {**GOOD, **here, "ms_per_crop": 2.0},
                          "openvino-int8-bf16": {**GOOD, **here, "ms_per_crop": 1.5},
                          "openvino-int8": {**GOOD, **here, "ms_per_crop": 1.8},
                          "onnxruntime-fp32": {**here, "ms_per_crop": 6.0},
                          "torch-fp32": {**here, "ms_per_crop": 9.0}})
    choice, line = _pick(run, BF16)
    assert [v.key for v in choice.ranked] == ["openvino-int8-bf16", "openvino-int8",
                                              "openvino-bf16", "onnxruntime-fp32", "torch-fp32"]
    assert "1.50 ms a crop here, 6.0x torch fp32" in line
    monkeypatch.setattr(runtime, "resolve_device", lambda device: __import__("torch").device(
        "cuda"))
    choice, line = _pick(run, BF16)
    assert [v.key for v in choice.ranked] == ["torch-fp32"]
    assert line == "engine auto: torch fp32 (eager torch on the GPU)"


def test_the_outputs_record_the_engine_and_why(tiny_checkpoint, tmp_path, capsys):
    import cv2

    from personkit.cli import main

    crops = tmp_path / "crops"
    crops.mkdir()
    cv2.imwrite(str(crops / "a.png"), np.full((64, 32, 3), 127, np.uint8))
    for engine, out in ((None, "auto"), ("torch", "named")):
        argv = ["predict", "-m", str(tiny_checkpoint), str(crops), "--out", str(tmp_path / out),
                "--no-vis", "--no-progress", *(["--engine", engine] if engine else [])]
        assert main(argv) == 0
    auto = json.loads((tmp_path / "auto" / "summary.json").read_text())["engine"]
    assert auto["engine"] == "torch" and auto["chosen_by"] == "auto"
    assert auto["reason"] == "exact: eager torch fp32" and "--auto" in auto["hint"]
    assert any("not exported and checked for this model yet" in u for u in auto["not_used"])
    named = json.loads((tmp_path / "named" / "summary.json").read_text())["engine"]
    assert named == {"engine": "torch", "precision": "fp32", "chosen_by": "named"}
    err = capsys.readouterr().err
    assert err.count("personkit: engine auto: torch fp32 (exact") == 1
    lines = []  # the arithmetic named: torch autocast, as before auto
    predictor = open_predictor(tiny_checkpoint, precision="bf16", log=lines.append)
    assert (predictor.engine.name, predictor.engine.precision) == ("torch", "bf16")
    assert lines[0].startswith("engine auto: torch bf16 (--precision bf16 names the arithmetic")


def test_an_export_of_another_model_is_refused_naming_both(tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from personkit.checkpoint import content_hash
    from personkit.inference.export import export_onnx

    model, other = make_model(), make_model(num_ids=5)  # another model: other weights
    run = tmp_path / "run"
    save_model(model, run / "model.safetensors")
    weights, foreign = content_hash(model.state_dict()), content_hash(other.state_dict())
    onnx = export_onnx(other, tmp_path / "other.onnx")  # an IR of it in int8's place
    ov.save_model(ov.Core().read_model(str(onnx)), str(export_path(run, VARIANTS[2]) /
                                                       "model.xml"))
    (run / CHECKS_FILE).write_text(json.dumps({"version": CHECKS_VERSION, "checks": {
        "openvino-int8": {**GOOD, "weights": weights}}}))
    lines = []
    predictor = open_predictor(run, device="cpu", flags=NO_BF16, log=lines.append)
    assert predictor.engine.name == "torch" and predictor.model_id is not None
    assert (f"openvino int8: {export_path(run, VARIANTS[2])} is an export of weights "
            f"{foreign[:12]}, this model's are {weights[:12]}: refused") in lines[0]
    record = predictor.engine.choice
    assert record["variant"] == "torch-fp32" and "refused" in record["not_used"][-1]


def test_score_losses_and_same_person_agreement():
    ref = {"market": {"reid": {"mAP": 0.90, "rank1": 0.95, "num_valid_queries": 10},
                      "match": {"threshold": 0.2}},
           "lip": {"parts": {"mIoU": 0.50, "mIoU5": 0.60}}}
    got = {"market": {"reid": {"mAP": 0.89, "rank1": 0.96}},
           "lip": {"parts": {"mIoU": 0.48, "mIoU5": 0.60}}}
    assert score_losses(ref, got) == pytest.approx({
        "market.reid.mAP": 1.0, "market.reid.rank1": -1.0, "lip.parts.mIoU": 2.0,
        "lip.parts.mIoU5": 0.0})
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 8))
    assert same_person_agreement(a, a * 3.0, 0.5) == (1.0, 780)  # scale does not matter
    b = a.copy()
    b[0] = -b[0]  # one crop moved: its 39 pairs may change, no other
    share, pairs = same_person_agreement(a, b, 0.5)
    assert pairs == 780 and 1 - 39 / 780 <= share < 1.0
    assert same_person_agreement(a, b, 0.5, limit=10)[1] == 45


def test_bench_reports_what_auto_picks():
    from personkit.deploy.bench import auto_pick, markdown

    pick = auto_pick(None, "cpu")  # no trained model: nothing exported or checked
    assert pick["variant"] == "torch-fp32" and pick["bench_row"] == "torch-eager"
    assert "no trained model to export and check" in pick["line"]
    report = {"machine": {"cpu": "x", "nproc": 2, "torch": "t", "onnxruntime": "o", "date": "d"},
              "settings": {"model": {}, "device": "cpu", "batch_sizes": [1], "warmup": 0,
                           "repeats": 1, "torch_threads": 1},
              "rows": [{"model": "four-task", "engine": "onnxruntime", "batch": 1,
                        "latency_ms": 10.0, "crops_per_s": 100.0, "min_latency_ms": 9.0,
                        "runs_ms": [10.0], "error": None}],
              "ratios": [], "head_costs": [],
              "auto_engine": {"variant": "onnxruntime-fp32", "bench_row": "onnxruntime",
                              "line": "engine auto: onnxruntime fp32 (exact)"}}
    text = markdown(report)
    assert ("`--engine auto` here: engine auto: onnxruntime fp32 (exact) (its rows: engine "
            "onnxruntime)") in text


@pytest.mark.slow  # about a minute: NNCF, OpenVINO compiles, four evaluations
def test_export_auto_checks_every_engine_and_auto_runs_what_passed(tiny_world_dir, tmp_path):
    for module in ("onnxruntime", "openvino", "nncf"):
        pytest.importorskip(module)
    from personkit.deploy.checks import export_auto

    run = _tiny_run(tiny_world_dir, tmp_path)
    content = export_auto(run, calib_size=32, flags=BF16, log=lambda line: None)
    checks = content["checks"]
    assert set(checks) == {v.key for v in VARIANTS}
    for key in ("openvino-bf16", "openvino-int8-bf16", "openvino-int8"):
        assert checks[key]["losses"] and checks[key]["pairs"] > 0, key
        assert checks[key]["passed"] == (checks[key]["worst_loss_points"] <= 1.0
                                         and checks[key]["same_person_agreement"] >= 0.99)
    assert checks["onnxruntime-fp32"]["parity_ok"] and checks["torch-fp32"]["ms_per_crop"] > 0
    lines = []
    predictor = open_predictor(run, device="cpu", flags=BF16, log=lines.append)
    chosen = predictor.engine.choice["variant"]
    assert chosen == min((k for k, r in checks.items() if r["passed"]),
                         key=lambda k: checks[k]["ms_per_crop"]), lines
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_auto(run, flags=BF16, log=lambda line: None)


def _tiny_run(world: Path, tmp_path: Path) -> Path:
    """A tiny untrained model saved as a run whose config evaluates on the tiny world and
    trains (calibrates) on its Market-like training split."""
    import torch

    from personkit.checkpoint import save_weights
    from personkit.config import config_from_dict, config_to_dict
    from personkit.models.build import build_model

    market = {"name": "market", "type": "market1501", "root": "Market-1501-v15.09.15",
              "tasks": ["reid", "attributes"]}
    cfg = config_from_dict({
        "model": {"backbone": {"name": "resnet18", "norm": "group"},
                  "heads": ["reid", "attributes", "pose", "segmentation"], "seg_classes": 20,
                  "fpn_channels": 16, "seg_channels": 8, "pose_features": "fpn",
                  "pose_window": 1, "input_size": [64, 32]},
        "data": {"root": str(world), "num_workers": 0, "train": [{**market, "split": "train"}],
                 "eval": [{**market, "input_size": [64, 32]},
                          {"name": "lip", "type": "lip", "root": "LIP", "split": "val",
                           "tasks": ["pose", "segmentation"], "input_size": [48, 48]}]}})
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    run = tmp_path / "run"
    save_weights(model, run / "model.safetensors", config_to_dict(cfg), model.meta.to_dict())
    return run
