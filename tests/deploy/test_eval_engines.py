"""Evaluation through the inference engines (issue 15, item 7): :class:`EngineModel` makes an
engine look like the model, so :func:`run_evaluation` runs the official protocols unchanged.

Tolerances. ONNX Runtime and OpenVINO fp32 match PyTorch within the model's float32
rounding bound (:func:`~personkit.models.numerics.fp32_tolerance`, ~1e-4 relative; ~1e-6 is
typical), so every score is identical except where a decision sits on a tie closer than that:
an attribute arg-max, a joint at exactly 0.5 head sizes, a part pixel between two classes, two
gallery distances in a ranking. Each such flip moves a score by one decision's weight, so the
tests allow one flipped decision per score: ``1/N`` for accuracies over ``N`` decisions,
``1/num_query`` for mAP (one swap changes one query's AP by at most 1), ``2/num_pixels`` for
pixel accuracy. In practice the scores come out equal.
"""

from __future__ import annotations

import pytest

from personkit.config import config_from_dict
from personkit.deploy.engines import EngineModel
from personkit.engine.datasets import read_records
from personkit.engine.evaluate import _image_shape, run_evaluation
from personkit.models.build import build_model

pytest.importorskip("onnxruntime")


def _cfg(world):
    sets = [{"name": "market", "type": "market1501", "root": "Market-1501-v15.09.15",
             "tasks": ["reid", "attributes"], "input_size": [64, 32]},
            # another input size than the model's: the engines export one graph per size
            {"name": "mpii", "type": "mpii", "root": "mpii", "split": "val", "tasks": ["pose"],
             "input_size": [48, 48]},
            {"name": "lip", "type": "lip", "root": "LIP", "split": "val",
             "tasks": ["pose", "segmentation"], "input_size": [48, 48]}]
    return config_from_dict({
        "model": {"backbone": {"name": "resnet18", "norm": "group"},
                  "heads": ["reid", "attributes", "pose", "segmentation"],
                  "seg_classes": 20,
                  "fpn_channels": 16, "seg_channels": 8, "pose_features": "fpn",
                  "pose_window": 1, "input_size": [64, 32]},
        "data": {"root": str(world), "num_workers": 0, "eval": sets}})


@pytest.fixture(scope="module")
def evaluated(tiny_world_dir):
    import torch

    torch.manual_seed(0)
    cfg = _cfg(tiny_world_dir)
    model = build_model(cfg.model).eval()
    return model, cfg, run_evaluation(model, cfg, batch_size=32, progress=False)


def _protocols(results):
    return {(d, p) for d, out in results.items() for p in out}


def test_onnxruntime_fp32_gives_the_torch_scores(evaluated):
    model, cfg, ref = evaluated
    engine = EngineModel.from_model(model, "onnxruntime")
    got = run_evaluation(engine, cfg, batch_size=32, progress=False)
    assert _protocols(got) == _protocols(ref) == {
        ("market", "reid"), ("market", "match"), ("market", "attributes"), ("mpii", "pose"),
        ("lip", "pose"), ("lip", "parts")}
    assert set(engine.engines) == {(64, 32), (48, 48)}  # one export per input size
    records = {d.name: read_records(d, "gallery" if d.name == "market" else None,
                                    cfg.data.root)
               for d in cfg.data.eval}
    reid, reid_ref = got["market"]["reid"], ref["market"]["reid"]
    one_query = 1 / reid_ref["num_valid_queries"]
    assert reid["mAP"] == pytest.approx(reid_ref["mAP"], abs=one_query)
    assert reid["cmc"][0] == pytest.approx(reid_ref["cmc"][0], abs=one_query)
    attrs, attrs_ref = got["market"]["attributes"], ref["market"]["attributes"]
    one_image = 1 / sum(r.pid > 0 for r in records["market"])
    for key in ("acc/gender", "acc/upcolor", "mean"):
        assert attrs[key] == pytest.approx(attrs_ref[key], abs=one_image)
    for name in ("mpii", "lip"):  # at least one annotated joint per person
        assert got[name]["pose"]["Mean"] == pytest.approx(ref[name]["pose"]["Mean"],
                                                          abs=1 / len(records[name]))
    parts, parts_ref = got["lip"]["parts"], ref["lip"]["parts"]
    one_pixel = 1 / sum(h * w for h, w in (_image_shape(r.image_path) for r in records["lip"]))
    assert parts["pixel_acc"] == pytest.approx(parts_ref["pixel_acc"], abs=2 * one_pixel)
    # a flipped pixel moves one class's IoU by < 2/(its union), a mean of 5 by less
    assert parts["mIoU5"] == pytest.approx(parts_ref["mIoU5"], abs=1e-3)


@pytest.mark.slow  # 12 s; OpenVINO's evaluation path is run by the bf16 and int8 tests too
def test_openvino_fp32_gives_the_torch_scores(evaluated):
    pytest.importorskip("openvino")
    model, cfg, ref = evaluated
    got = run_evaluation(EngineModel.from_model(model, "openvino"), cfg, ["market", "mpii"],
                         batch_size=32, progress=False)
    one_query = 1 / ref["market"]["reid"]["num_valid_queries"]
    assert got["market"]["reid"]["mAP"] == pytest.approx(ref["market"]["reid"]["mAP"],
                                                         abs=one_query)
    mpii = read_records(cfg.data.eval[1], None, cfg.data.root)
    assert got["mpii"]["pose"]["Mean"] == pytest.approx(ref["mpii"]["pose"]["Mean"],
                                                        abs=1 / len(mpii))


def test_int8_evaluates_every_protocol(evaluated, tiny_world_dir):
    model, cfg, ref = evaluated
    engine = EngineModel.from_model(model, "onnxruntime", int8=True, calib_data=tiny_world_dir,
                                    calib_size=8)
    got = run_evaluation(engine, cfg, batch_size=32, progress=False)
    assert _protocols(got) == _protocols(ref)
    for name, out in got.items():
        for protocol, scores in out.items():
            headline = {"reid": "mAP", "attributes": "mean", "pose": "Mean",
                        "parts": "mIoU5", "match": "precision"}[protocol]
            assert 0.0 <= scores[headline] <= 1.0, (name, protocol, scores[headline])


def test_an_export_runs_only_its_input_size(evaluated, tmp_path):
    from personkit.inference.export import export_onnx

    model, cfg, ref = evaluated
    path = export_onnx(model, tmp_path / "model.onnx")
    engine = EngineModel.from_export(path)
    got = run_evaluation(engine, cfg, ["market"], batch_size=32, progress=False)
    assert got["market"]["reid"]["mAP"] == pytest.approx(
        ref["market"]["reid"]["mAP"], abs=1 / ref["market"]["reid"]["num_valid_queries"])
    with pytest.raises(ValueError, match=r"exported for 64x32 inputs.*read at 48x48"):
        run_evaluation(engine, cfg, ["mpii"], batch_size=32, progress=False)


def test_engine_model_refuses_heads_the_export_lacks(evaluated, tmp_path):
    import torch

    from personkit.inference.export import export_onnx

    model, _, _ = evaluated
    engine = EngineModel.from_export(export_onnx(model, tmp_path / "m.onnx", heads=["reid"]))
    with pytest.raises(ValueError, match=r"heads \['pose'\] are not available"):
        engine(torch.zeros(1, 3, 64, 32), heads=["pose"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--int8", "--calib-data", "."], "--engine onnxruntime or openvino"),
    (["--int8", "--engine", "openvino"], "--int8 needs --calib-data"),
])
def test_eval_cli_rejects_bad_engine_flags(tmp_path, capsys, flags, message):
    from personkit.cli import main

    assert main(["eval", "--model", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_engine_model_outputs_match_the_model(evaluated):
    """Through the torch engine (which gives only the part arg-max) every field matches."""
    import torch

    from personkit.inference.backends import TorchEngine

    model, _, _ = evaluated
    engine = EngineModel(lambda size: TorchEngine(model, torch.device("cpu")), model.meta,
                         model.enabled, "torch")
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    heads = ["reid", "attributes", "pose", "segmentation"]
    got = engine(x, heads=heads)
    with torch.inference_mode():
        ref = model(x, heads=heads)
    # exact: the torch engine runs the same model on the same batch (same kernels, threads)
    exact = {"rtol": 0, "atol": 0}
    torch.testing.assert_close(got.embedding, ref.embedding, **exact)
    torch.testing.assert_close(got.keypoints, ref.keypoints, **exact)
    torch.testing.assert_close(got.keypoint_scores, ref.keypoint_scores, **exact)
    assert set(got.attributes) == set(ref.attributes)
    for name, logits in ref.attributes.items():
        torch.testing.assert_close(got.attributes[name], logits, **exact)
    assert got.parts.shape == ref.parts.shape
    assert torch.equal(got.parts.argmax(1), ref.parts.argmax(1))


def test_keep_fp32_leaves_the_named_layers_unquantized(evaluated, tiny_world_dir, tmp_path):
    import onnx

    from personkit.deploy.quantize import calibration_batch, quantize_export
    from personkit.inference.export import export_onnx

    model, _, _ = evaluated
    path = export_onnx(model, tmp_path / "model.onnx")
    calib = calibration_batch(tiny_world_dir, model.meta, size=4)
    out = quantize_export(path, calib, keep_fp32=[r".*/model/stem/.*"])
    graph = onnx.load(str(out)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}

    def quantized(prefix):  # convolutions under prefix whose weight is dequantized int8
        convs = [n for n in graph.node if n.op_type == "Conv" and n.name.startswith(prefix)]
        assert convs, prefix
        return {n.input[1] in dequantized for n in convs}

    assert quantized("/model/stem/") == {False}
    assert quantized("/model/layer1/") == {True}


@pytest.mark.parametrize("engine", ["torch", pytest.param("openvino", marks=pytest.mark.slow)])
def test_bf16_evaluation_runs_bf16_within_its_bound(evaluated, engine):
    """``personkit eval --precision bf16`` (issue #27): the torch engine's autocast or
    OpenVINO's bf16 hint; the outputs evaluation reads stay within the bound derived from
    bf16's 8-bit significand, and every protocol runs. Where the CPU has no bf16 instructions
    OpenVINO compiles fp32 and says so."""
    import warnings

    import torch

    from personkit.deploy.engines import evaluation_model
    from personkit.models.numerics import bf16_tolerance, relative_difference

    if engine == "openvino":
        pytest.importorskip("openvino")
    model, cfg, ref = evaluated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf = evaluation_model(model, engine, precision="bf16", device=torch.device("cpu"),
                              log=None)
        runs = bf.engine((64, 32)).precision
    assert isinstance(bf, EngineModel) and bf.precision == "bf16"
    assert (runs == "fp32") == any("no bf16 instructions" in str(w.message) for w in caught)
    assert engine == "openvino" or runs == "bf16"  # torch autocasts on any CPU
    x = torch.randn(6, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x, heads=("reid", "pose")), bf(x, heads=("reid", "pose"))
    tol = bf16_tolerance(model)
    assert relative_difference(a.embedding, b.embedding) <= tol
    # joint positions are arg-maxes of (here, untrained and nearly flat) heatmaps, which a
    # near-tie may move anywhere; their scores, the maxima, move only by the rounding
    assert relative_difference(a.keypoint_scores, b.keypoint_scores) <= tol
    got = run_evaluation(bf, cfg, batch_size=32, progress=False)
    assert _protocols(got) == _protocols(ref)
    assert 0 <= got["market"]["reid"]["mAP"] <= 1


def test_bf16_on_onnxruntime_is_refused_by_name(evaluated):
    from personkit.deploy.engines import check_evaluation_options

    with pytest.raises(ValueError, match="ONNX Runtime runs fp32 only"):
        check_evaluation_options("onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="precision must be fp32 or bf16"):
        check_evaluation_options("torch", precision="int4")
