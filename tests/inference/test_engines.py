"""Engines behind one Predictor: ONNX Runtime and OpenVINO fp32 give torch's PersonResults,
exports carry their metadata, bad inputs get clear errors; int8 quantization and its parity."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import onnx
import pytest
import torch

from personkit.cli import main
from personkit.deploy.export import check_parity
from personkit.extras import MissingExtraError, require
from personkit.inference import Predictor
from personkit.inference.backends import OnnxRuntimeEngine
from personkit.inference.export import export_onnx, export_openvino
from personkit.models.numerics import fp32_tolerance, relative_difference

BOXES = [[10, 5, 60, 110], [70, 20, 150, 118], [0, 0, 160, 120]]
TASKS4 = ("reid", "attributes", "pose", "segmentation")


def assert_same_results(ref, got, tol):
    """Same PersonResults within ``tol``, the model's float32 rounding bound (engines sum in
    another order): relative for embeddings, absolute for probabilities (in [0, 1]), relative
    to the crop size for keypoints (normalised coordinates in [0, 1], scaled by the crop).
    An attribute label or a part pixel is an arg-max: it flips only where its two best
    scores are closer than ``tol``; for scores spread over O(1) that is a fraction of about
    ``tol`` (1e-4) of the pixels, ten times under the 1e-3 allowed, and no attribute here."""
    assert len(ref) == len(got)
    for r, g in zip(ref, got, strict=True):
        assert r.box == g.box and r.part_classes == g.part_classes
        assert relative_difference(r.embedding, g.embedding) <= tol
        for name, a in r.attributes.items():
            assert g.attributes[name].label == a.label
            assert abs(g.attributes[name].probability - a.probability) <= tol
        box_size = max(r.box[2] - r.box[0], r.box[3] - r.box[1])
        assert np.abs(r.keypoints[:, :2] - g.keypoints[:, :2]).max() <= tol * box_size
        assert np.abs(r.keypoints[:, 2] - g.keypoints[:, 2]).max() <= tol  # confidences
        assert r.parts_box == g.parts_box
        assert (r.parts == g.parts).mean() >= 0.999


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, tiny_model):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("eng") / "model.onnx")


@pytest.fixture(scope="module")
def ov_dir(tmp_path_factory, tiny_model, onnx_file):
    pytest.importorskip("openvino")
    return export_openvino(tiny_model, tmp_path_factory.mktemp("ov") / "ov",
                           onnx_path=onnx_file).parent


def test_onnxruntime_predictor_matches_torch(tiny_model, onnx_file, scene):
    ref = Predictor(tiny_model, flip_tta=True).predict(scene, BOXES)
    got = Predictor.from_export(onnx_file, flip_tta=True).predict(scene, BOXES)
    assert_same_results(ref, got, fp32_tolerance(tiny_model))


def test_openvino_predictor_matches_torch(tiny_model, onnx_file, ov_dir, scene):
    # OpenVINO runs at f32 explicitly (OpenVINOEngine's INFERENCE_PRECISION_HINT): on AMX and
    # AVX512-BF16 CPUs its default would be bf16, whose 2^-8 rounding no float32 bound covers.
    tol = fp32_tolerance(tiny_model)
    ref = Predictor(tiny_model).predict(scene, BOXES)
    assert_same_results(ref, Predictor.from_export(ov_dir).predict(scene, BOXES), tol)
    # OpenVINO also reads the .onnx (its metadata included) directly
    assert_same_results(ref, Predictor.from_export(onnx_file, "openvino").predict(scene, BOXES),
                        tol)
    report = check_parity(tiny_model, ov_dir, batch_sizes=(2, 3))
    assert report.ok and report.tol == tol, report.summary()


def test_openvino_engines_given_threads_are_not_pinned_to_cores(ov_dir):
    """Issue 38: an engine given threads shares the cores with another (the detector beside
    the person network): OpenVINO would pin both to the first core; given none it keeps
    OpenVINO's defaults."""
    from personkit.inference.backends import OpenVINOEngine, openvino_config

    shared = OpenVINOEngine(ov_dir, threads=1).compiled
    assert shared.get_property("ENABLE_CPU_PINNING") is False
    assert shared.get_property("INFERENCE_NUM_THREADS") == 1
    assert openvino_config("f32") == {"INFERENCE_PRECISION_HINT": "f32",
                                      "PERFORMANCE_HINT": "LATENCY"}  # OpenVINO's defaults


def test_openvino_bf16_stays_within_bf16_rounding(tiny_model, tiny_checkpoint, ov_dir, scene):
    """OpenVINO bf16 (issue #27): within the bf16 bound of torch fp32 where the CPU has bf16
    instructions; where it has none OpenVINO compiles fp32, the predictor says so and warns."""
    import warnings

    from personkit.models.numerics import bf16_tolerance

    ref = Predictor(tiny_model).predict(scene, BOXES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for p in (Predictor.from_export(ov_dir, precision="bf16"),
                  Predictor.from_checkpoint(tiny_checkpoint, engine="openvino",
                                            precision="bf16")):
            assert p.precision == p.engine.precision in ("bf16", "fp32")
            for a, b in zip(ref, p.predict(scene, BOXES), strict=True):
                assert relative_difference(a.embedding, b.embedding) <= bf16_tolerance(
                    tiny_model)
    fell_back = [w for w in caught if "no bf16 instructions" in str(w.message)]
    assert bool(fell_back) == (p.precision == "fp32")
    with pytest.raises(ValueError, match="runs fp32 only"):
        Predictor.from_checkpoint(tiny_checkpoint, engine="onnxruntime", precision="bf16")


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_from_checkpoint_with_engine_and_heads(tiny_checkpoint, tiny_model, engine, scene):
    pytest.importorskip(engine)
    p = Predictor.from_checkpoint(tiny_checkpoint, engine=engine, heads=["pose", "reid"])
    assert p.engine.name == engine and p.heads == ("reid", "pose")
    r = p.predict(scene, BOXES[:1])[0]
    ref = Predictor(tiny_model, heads=["reid", "pose"]).predict(scene, BOXES[:1])[0]
    assert r.attributes is None and r.parts is None
    tol = fp32_tolerance(tiny_model)  # keypoints: relative to the 105-pixel crop
    assert relative_difference(ref.embedding, r.embedding) <= tol
    np.testing.assert_allclose(r.keypoints[:, :2], ref.keypoints[:, :2], rtol=0, atol=tol * 105)
    np.testing.assert_allclose(r.keypoints[:, 2], ref.keypoints[:, 2], rtol=0, atol=tol)


def test_head_missing_from_export_is_an_error(tmp_path, tiny_model):
    path = export_onnx(tiny_model, tmp_path / "reid.onnx", heads=["reid"])
    with pytest.raises(ValueError, match=r"heads \['pose'\] are not available.*onnxruntime"):
        Predictor.from_export(path, heads=["pose"])
    assert Predictor.from_export(path).heads == ("reid",)


def test_onnx_without_personkit_metadata_is_an_error(tmp_path, onnx_file):
    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    foreign = tmp_path / "other_tool.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(ValueError, match="other_tool.onnx has no personkit metadata"):
        OnnxRuntimeEngine(foreign)
    assert main(["predict", "-m", str(foreign), str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'personkit\[openvino\]'"):
        require("openvino")


def test_predict_cli_engines_agree(tiny_checkpoint, tiny_model, onnx_file, scene, tmp_path):
    cv2.imwrite(str(tmp_path / "street.png"), scene[:, :, ::-1])
    (tmp_path / "street.txt").write_text("10,5,60,110\n70,20,150,118\n")
    rows = {}
    for engine, ckpt in (("torch", tiny_checkpoint), ("onnxruntime", tiny_checkpoint),
                         ("onnxruntime", onnx_file)):
        out = tmp_path / f"out_{engine}_{ckpt.suffix}"
        assert main(["predict", "-m", str(ckpt), str(tmp_path / "street.png"), "--out", str(out),
                     "--engine", engine, "--no-vis", "--no-progress"]) == 0
        rows[(engine, ckpt.suffix)] = np.load(out / "embeddings.npy")
    ref = rows[("torch", tiny_checkpoint.suffix)]
    for emb in rows.values():
        assert relative_difference(ref, emb) <= fp32_tolerance(tiny_model)


# ----------------------------------------------------------------------------- int8


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Smooth random colour images (photo-like) and one label map, which is left out."""
    root = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(1)
    for i in range(24):
        small = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
        cv2.imwrite(str(root / f"{i:03d}.jpg"), cv2.resize(small, (40, 90)))
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "labels" / "mask.png"), np.zeros((90, 40), np.uint8))
    return root


def test_calibration_folder_without_images_is_an_error(tmp_path, tiny_model):
    from personkit.deploy.quantize import calibration_batch

    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images .* under calibration folder"):
        calibration_batch(tmp_path, tiny_model.meta)


def test_calibration_batch_is_normalised_crops(calib_dir, tiny_model):
    from personkit.deploy.quantize import calibration_batch

    lines: list[str] = []
    calib = calibration_batch(calib_dir, tiny_model.meta, size=100, log=lines.append)
    assert calib.shape == (24, 3, 64, 32) and calib.dtype == np.float32
    assert "1 single-channel" in lines[0]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_int8_export_parity(tmp_path, tiny_model, calib_dir, fmt, capsys):
    from personkit.deploy.quantize import (
        INT8_TOL,
        calibration_batch,
        check_int8,
        quantize_export,
    )

    if fmt == "openvino":
        pytest.importorskip("nncf")
        path = export_openvino(tiny_model, tmp_path / "ov").parent
    else:
        path = export_onnx(tiny_model, tmp_path / "model.onnx")
    calib = calibration_batch(calib_dir, tiny_model.meta, size=24)
    capsys.readouterr()
    out = quantize_export(path, calib)
    noise = capsys.readouterr()  # NNCF's progress bars and INFO lines stay out (issue #23)
    assert "Statistics collection" not in noise.out + noise.err and "INFO" not in noise.err
    report = check_int8(tiny_model, out, calib)
    # int8 vs fp32: INT8_TOL is derived from the quantization step (see check_int8); the
    # integer sums are exact on VNNI and AMX alike, only requantization rounding differs. The
    # part arg-max of an untrained net sits on small logit gaps, so 80 % agreement is a
    # sanity bound that a wrong scale or zero point (agreement ~1/20) fails.
    assert report.ok and max(report.rel_rms.values()) <= INT8_TOL, report.summary()
    assert report.parts_agreement >= 0.8
    if fmt == "onnx":  # int8 weights in the graph; the fp32-kept nodes are not quantized
        proto = onnx.load(str(out))
        quantized = {n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
        assert any(".weight" in q or "onnx::Conv" in q for q in quantized)
        convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
        kept = [convs["/model/pose/conv/Conv"], convs["/model/segmentation/predictor/Conv"]]
        assert not any("DequantizeLinear" in n.input[1] for n in kept)  # fp32 weights
        assert "DequantizeLinear" in convs["/model/layer1/layer1.0/conv1/Conv"].input[1]
    p = Predictor.from_export(out)
    assert p.predict_crops([np.zeros((64, 32, 3), np.uint8)])[0].embedding.shape == (512,)


@pytest.mark.slow  # ~50 s: quantizes two models with two tools
def test_bench_rows_for_every_engine_and_the_roofline(tiny):
    pytest.importorskip("nncf")
    from personkit.deploy.bench import Bench, markdown

    make_model, _ = tiny
    model = make_model(heads=("reid", "attributes", "pose", "segmentation"))
    bench = Bench(model, {"reid-only": make_model(heads=("reid",))}, batch_sizes=(2,),
                  warmup=0, repeats=1, skip=("separate", "heads", "light"))
    report = bench.run()
    got = {(r["model"], r["engine"]) for r in report["rows"] if r["crops_per_s"]}
    for engine in ("torch-eager", "onnxruntime", "openvino-fp32", "onnxruntime-int8",
                   "openvino-int8"):
        assert {("four-task", engine), ("reid-only", engine)} <= got, engine
    assert report["gemm_ceiling"]["fp32_gflops"] > 0
    flops = report["gflop_per_crop"]
    assert set(flops) == {"trunk", "head:reid", "head:attributes", "head:pose",
                          "head:segmentation"}
    assert flops["trunk"] > flops["head:pose"] > 0
    shares = {r["engine"]: r["share"] for r in report["roofline"]}
    assert shares["torch-eager"] > 0 and "openvino-int8" in shares
    assert "Machine ceiling" in markdown(report)
    from personkit.deploy.roofline import has_bf16

    bf16 = {"torch-autocast-bf16", "openvino-fp32-bf16", "openvino-int8-bf16"}
    assert bf16 <= {e for _, e in got} if has_bf16() else not bf16 & {e for _, e in got}
    assert bool(report["gemm_ceiling"].get("bf16_gflops")) == has_bf16()
    kinds = {r["engine"]: r["ceiling_kind"] for r in report["roofline"]}
    assert not has_bf16() or kinds["openvino-fp32-bf16"] == "bf16 GFLOP/s"
    ceiling = report["gemm_ceiling"]
    if ceiling["int8_features"]:  # issue 38: the int8 yardstick is the fastest int8 kernel,
        kernels = ceiling["int8_openvino"]  # OpenVINO's own among them, run in int8
        assert set(kernels) == {"matmul", "conv3x3 256ch", "conv3x3 512ch"}
        assert {k["precision"] for k in kernels.values()} <= {"u8", "i8"}
        rates = [k["gops"] for k in kernels.values()] + [ceiling["int8_torch_gops"] or 0]
        assert ceiling["int8_gops"] == max(rates) > 0
        assert f"({ceiling['int8_source']}; " in markdown(report)


def test_an_export_keeps_the_identity_of_its_model(tiny, tiny_model, onnx_file):
    """Embeddings are comparable exactly when their identities are equal: an export carries the
    content hash of the weights it was written from; other weights or flip averaging differ."""
    make_model, _ = tiny
    torch_id = Predictor(tiny_model).model_id
    assert torch_id == Predictor.from_export(onnx_file).model_id and len(torch_id) == 16
    assert Predictor(tiny_model, flip_tta=False).model_id != torch_id
    other = make_model()
    assert Predictor(other).model_id == torch_id  # the same seed builds the same weights
    with torch.no_grad():
        other.backbone.stem[0].weight.add_(1e-3)  # another training run: other weights
    assert Predictor(other).model_id != torch_id



def test_an_export_carries_the_calibrated_threshold_of_its_weights(tiny_checkpoint, tmp_path):
    """`personkit export` copies the run's same-person thresholds of its weights (both flip
    settings) into the file; Predictor.calibration picks the one of its own flip setting, and
    a record of other weights stays behind (issue #23 item 1)."""
    import shutil

    from personkit.deploy.export import export_model
    from personkit.models.identity import write_calibration

    model = tmp_path / "run" / "model.safetensors"
    model.parent.mkdir()
    shutil.copy(tiny_checkpoint, model)
    torch_pred = Predictor.from_checkpoint(model, "cpu")
    assert torch_pred.calibration is None  # nothing measured yet
    weights = torch_pred.engine.weights_hash
    records = {flip: {"threshold": 0.01 + flip, "weights": weights, "flip_tta": flip}
               for flip in (True, False)}
    for flip, record in records.items():
        write_calibration(model, Predictor.from_checkpoint(model, "cpu", flip_tta=flip).model_id,
                          record)
    write_calibration(model, "0123456789abcdef", {"threshold": 0.5, "weights": "other"})
    assert Predictor.from_checkpoint(model, "cpu").calibration == records[True]
    pytest.importorskip("openvino")
    assert export_model(model, onnx=tmp_path / "m.onnx", openvino=tmp_path / "ov",
                        log=lambda _: None)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert "other" not in props["personkit_calibration"]
    for flip, record in records.items():
        assert Predictor.from_export(tmp_path / "m.onnx", flip_tta=flip).calibration == record
        assert Predictor.from_export(tmp_path / "ov", "openvino",
                                     flip_tta=flip).calibration == record


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_predict_cli_precision(tiny_checkpoint, tiny_model, engine, scene, tmp_path):
    """`personkit predict --precision bf16` (issue #27) on the torch and OpenVINO engines:
    embeddings within the bf16 bound of fp32's; ONNX Runtime refuses bf16."""
    from personkit.models.numerics import bf16_tolerance

    pytest.importorskip(engine)
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, (x1, y1, x2, y2) in enumerate(BOXES):
        cv2.imwrite(str(crops / f"{i}.png"), scene[y1:y2, x1:x2, ::-1])
    emb = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["predict", "--model", str(tiny_checkpoint), str(crops), "--out", str(out),
                     "--engine", engine, "--precision", precision, "--no-vis", "--crops",
                     "--no-progress"]) == 0
        emb[precision] = np.load(out / "embeddings.npy")
    for a, b in zip(emb["fp32"], emb["bf16"], strict=True):
        assert relative_difference(a, b) <= bf16_tolerance(tiny_model)
    assert main(["predict", "-m", str(tiny_checkpoint), str(crops), "--out", str(tmp_path / "o"),
                 "--engine", "onnxruntime", "--precision", "bf16", "--crops"]) == 2
