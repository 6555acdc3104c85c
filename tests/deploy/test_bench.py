"""Bench bookkeeping on hand-made rows (no timing): ratios, head costs, markdown, configs;
and one tiny run of the demo model (pose on the FPN), which times the model's own pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from personkit.config import ModelConfig
from personkit.deploy.bench import Bench, Row, head_costs, markdown, ratios
from personkit.models.build import bench_variant_configs, build_bench_models
from personkit.models.loading import model_config_of

DEMO = Path(__file__).resolve().parents[2] / "personkit" / "configs" / "demo.yaml"


def _row(model, latency, best=None, engine="torch-eager", batch=10):
    return Row(model, engine, batch, latency, batch / latency * 1e3, best or latency)


def test_ratios_are_throughput_ratios_from_median_and_best_runs():
    rows = [_row("four-task", 100, 90), _row("reid-only", 60, 45), _row("four-separate", 280),
            _row("four-task-light", 75)]
    (entry,) = ratios(rows)
    assert entry["four_task_vs_separate"] == pytest.approx(2.8)
    assert entry["four_task_vs_reid_only"] == pytest.approx(0.6)
    assert entry["four_task_vs_reid_only_min"] == pytest.approx(0.5)
    assert entry["light_vs_reid_only"] == pytest.approx(0.8)


def test_head_costs_and_markdown():
    rows = [_row("four-task", 100), _row("trunk", 60), _row("head:segmentation", 35),
            Row("four-task", "onnxruntime", 10, error="boom")]
    costs = head_costs(rows)
    assert [c["part"] for c in costs] == ["trunk", "head:segmentation"]
    assert costs[1]["share"] == pytest.approx(0.35)
    report = {"machine": {"cpu": "x", "nproc": 2, "torch": "t", "onnxruntime": "o", "date": "d"},
              "settings": {"model": {}, "device": "cpu", "batch_sizes": [10], "warmup": 1,
                           "repeats": 3, "torch_threads": 2},
              "rows": [r.__dict__ for r in rows], "ratios": ratios(rows), "head_costs": costs}
    text = markdown(report)
    assert "| four-task | torch-eager | 100.0 (100) |" in text
    assert "| four-task | onnxruntime | error |" in text
    assert "| head:segmentation | 10 | 35.0 | 35.0 % |" in text


def test_variants_share_the_backbone_settings():
    cfg = ModelConfig(fpn_channels=256, seg_channels=128)
    variants = bench_variant_configs(cfg)
    assert variants["four-task"].heads == ("reid", "attributes", "pose", "segmentation")
    assert [variants[f"{t}-only"].heads for t in ("reid", "pose")] == [("reid",), ("pose",)]
    light = variants["four-task-light"]
    assert (light.fpn_channels, light.seg_channels) == (128, 64)
    assert {v.backbone for v in variants.values()} == {cfg.backbone}


def test_bench_times_the_demo_model_and_its_pieces():
    """The demo config puts pose on the FPN (``pose_features: fpn``); bench times the model's
    trunk and heads (no forward of its own), so every part runs."""
    cfg = model_config_of(DEMO, ["model.input_size=[64,32]"])
    assert cfg.pose_features == "fpn"
    model, variants = build_bench_models(cfg)
    bench = Bench(model, variants, batch_sizes=(2,), warmup=0, repeats=1,
                  skip=("onnx", "light", "openvino", "int8", "roofline"))
    report = bench.run()
    errors = [(r["model"], r["error"]) for r in report["rows"] if r["error"]]
    assert errors == []
    assert [c["part"] for c in report["head_costs"]] == [
        "trunk", "head:reid", "head:attributes", "head:pose", "head:segmentation"]
    assert {r["model"] for r in report["rows"]} >= {"four-task", "reid-only", "four-separate"}
    from personkit.deploy.roofline import has_bf16

    bf16 = {(r["model"], r["engine"]) for r in report["rows"] if "bf16" in r["engine"]}
    assert bf16 == ({("four-task", "torch-autocast-bf16"), ("reid-only", "torch-autocast-bf16")}
                    if has_bf16() else set())  # only where the CPU has bf16 instructions
    assert report["settings"]["model"]["backbone"] == "resnet10t"


def test_bench_rejects_unknown_variants():
    model, _ = build_bench_models(model_config_of(DEMO, ["model.input_size=[64,32]"]))
    with pytest.raises(ValueError, match="unknown bench variants"):
        Bench(model, {"typo-only": model})
