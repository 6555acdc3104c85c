"""Where the time goes (issue #27, item 1): per-layer profiles from the engines' own profilers,
OpenVINO's per-layer performance counters (``PERF_COUNT``) and ONNX Runtime's profiling, on
the four-task and the reid-only model, fp32, int8 and (where the CPU has bf16) bf16.

Every executed layer's time is summed over the timed runs and put in two sets of buckets:

* by **kind**: convolutions and matrix products; normalisation (the GroupNorm / BatchNorm
  layers and the reshapes and affine ops of their modules); layout reorders; (de)quantisation
  and precision conversions; resizes; everything else (activations, additions, pooling, ...);
* by **part**, from the ONNX node names (``/model/<module>/...``): backbone, FPN, segmentation
  head (with its final upsampling), pose head, ReID embedding and attribute heads, other.

Models are randomly initialised (speed does not depend on the weights); int8 is calibrated on
random normalised batches, as ``personkit bench`` does.

    OMP_NUM_THREADS=2 python benchmarks/bench_profile.py --config personkit/configs/demo.yaml \
        --batch 10 --runs 20 --out benchmarks/results/profile.json
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import tempfile
from pathlib import Path

KINDS = ("conv/matmul", "norm", "reorder", "quantize/convert", "resize", "other")
PARTS = ("backbone", "fpn", "segmentation", "pose", "reid+attributes", "other")
_CONV = {"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Conv", "Gemm",
         "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "FusedConv"}
_NORM = {"MVN", "InstanceNormalization", "BatchNormalization", "GroupNormalization",
         "NormalizeL2"}
_QUANT = {"FakeQuantize", "Convert", "QuantizeLinear", "DequantizeLinear",
          "DynamicQuantizeLinear", "Cast"}
_RESIZE = {"Interpolate", "Resize"}


def norm_modules(onnx_path: Path) -> set[str]:
    """The module paths (``/model/layer1/layer1.0/bn1``) of every normalisation node."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return {n.name.rsplit("/", 1)[0] for n in graph.node if n.op_type in _NORM}


def kind_of(op: str, name: str, norms: set[str]) -> str:
    if op in _CONV:
        return "conv/matmul"
    if op == "Reorder" or "reorder" in name.lower():
        return "reorder"
    if op in _NORM or any(name.startswith(m + "/") for m in norms):
        return "norm"
    if op in _QUANT or "Dequantization" in name or "/fq_" in name:
        return "quantize/convert"
    return "resize" if op in _RESIZE else "other"


#: Graph outputs (personkit.inference.contract) and the part that computes them.
_OUTPUTS = {"parts": "segmentation", "attr_": "reid+attributes", "embedding": "reid+attributes",
            "keypoint": "pose"}


def part_of(name: str) -> str:
    """The model part of a node, from its ONNX module path or the graph output it makes."""
    for prefix, part in _OUTPUTS.items():
        if name.startswith(prefix):
            return part
    path = name.split("/")
    mod = path[2] if len(path) > 2 and path[1] == "model" else ""
    if mod in ("stem", "layer1", "layer2", "layer3", "layer4", "conv1", "bn1", "maxpool"):
        return "backbone"
    if mod == "fpn":
        return "fpn"
    if mod in ("segmentation",) or (mod.startswith("Resize") and len(path) == 3):
        return "segmentation"
    if mod == "pose":
        return "pose"
    return "reid+attributes" if mod in ("reid", "attributes", "embedding", "neck") else "other"


def profile_openvino(xml: Path, x, runs: int, threads: int, precision: str) -> list[tuple]:
    """(op type, node name, ms summed over ``runs``) per executed layer."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {
        "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: x})
    totals: dict[tuple, float] = collections.defaultdict(float)
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            if str(info.status).endswith("EXECUTED"):
                totals[(info.node_type, info.node_name)] += info.real_time.total_seconds() * 1e3
    return [(op, name, ms) for (op, name), ms in totals.items()]


def profile_onnxruntime(path: Path, x, runs: int, threads: int, tmp: Path) -> list[tuple]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"images": x})  # its first run is set-up: left out below
    first = len(json.loads(Path(session.end_profiling()).read_text()))
    options.profile_file_prefix = str(tmp / "ort2")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(None, {"images": x})
    events = json.loads(Path(session.end_profiling()).read_text())[first:]
    totals: dict[tuple, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            totals[(e["args"]["op_name"], e["name"][:-len("_kernel_time")])] += e["dur"] / 1e3
    return [(op, name, ms) for (op, name), ms in totals.items()]


def summarise(layers: list[tuple], norms: set[str], runs: int) -> dict:
    kinds = collections.Counter()
    parts = collections.Counter()
    for op, name, ms in layers:
        kinds[kind_of(op, name, norms)] += ms / runs
        parts[part_of(name)] += ms / runs
    total = sum(kinds.values())
    top = sorted(layers, key=lambda t: -t[2])[:8]
    return {"ms_per_run": total, "kinds": {k: kinds[k] for k in KINDS},
            "parts": {p: parts[p] for p in PARTS},
            "top_layers": [(op, name, ms / runs) for op, name, ms in top]}


def engines_for(model, name: str, tmp: Path, calib, skip_int8: bool
                ) -> tuple[dict[str, tuple], Path]:
    """label -> (engine, path, precision) of one model's exports, and its fp32 ONNX file."""
    from personkit.deploy.quantize import quantize_export
    from personkit.inference.export import export_onnx, export_openvino

    onnx_path = export_onnx(copy.deepcopy(model), tmp / f"{name}.onnx")
    ov_xml = export_openvino(model, tmp / f"{name}-ov", onnx_path=onnx_path)
    out = {"onnxruntime fp32": ("ort", onnx_path, "f32"),
           "openvino fp32": ("ov", ov_xml, "f32"),
           "openvino bf16": ("ov", ov_xml, "bf16")}
    if not skip_int8:
        out["onnxruntime int8"] = ("ort", quantize_export(onnx_path, calib), "f32")
        out["openvino int8"] = ("ov", quantize_export(ov_xml, calib), "f32")
        out["openvino int8 + bf16"] = ("ov", out["openvino int8"][1], "bf16")
    return out, onnx_path


def markdown(results: list[dict]) -> str:
    lines = ["| model | engine | ms / batch | " + " | ".join(KINDS) + " | "
             + " | ".join(PARTS) + " |", "|---|---|---|" + "---|" * (len(KINDS) + len(PARTS))]
    for r in results:
        s = r["summary"]
        t = s["ms_per_run"] or 1.0
        cells = [f"{100 * s['kinds'][k] / t:.0f} %" for k in KINDS]
        cells += [f"{100 * s['parts'][p] / t:.0f} %" for p in PARTS]
        lines.append(f"| {r['model']} | {r['engine']} | {t:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    import numpy as np

    from personkit.deploy.roofline import has_bf16
    from personkit.models.build import build_bench_models
    from personkit.models.loading import model_config_of
    from personkit.runtime import machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="personkit/configs/demo.yaml",
                   help="a YAML config, or 'default': the paper's ResNet-50 GN at 256x128")
    p.add_argument("--override", action="append", default=[], help="section.key=value")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--out", default="runs/profile.json")
    args = p.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())
    source = None if args.config == "default" else args.config
    four, variants = build_bench_models(model_config_of(source, args.override))
    models = {"four-task": four.eval(), "reid-only": variants["reid-only"].eval()}
    h, w = four.meta.input_size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, h, w), dtype=np.float32)
    calib = rng.standard_normal((32, 3, h, w), dtype=np.float32)
    bf16 = has_bf16()
    results = []
    with tempfile.TemporaryDirectory(prefix="personkit-profile-") as tmp:
        tmp = Path(tmp)
        for name, model in models.items():
            exports, onnx_path = engines_for(model, name, tmp, calib, args.no_int8)
            norms = norm_modules(onnx_path)
            for label, (kind, path, precision) in exports.items():
                if precision == "bf16" and not bf16:
                    continue
                layers = (profile_openvino(path, x, args.runs, threads, precision)
                          if kind == "ov" else profile_onnxruntime(path, x, args.runs, threads,
                                                                   tmp))
                summary = summarise(layers, norms, args.runs)
                results.append({"model": name, "engine": label, "summary": summary})
                print(f"{name:<10} {label:<22} {summary['ms_per_run']:.1f} ms/batch "
                      + " ".join(f"{k} {v:.1f}" for k, v in summary["kinds"].items()),
                      flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": vars(args), "machine": machine_info(),
                                          "batch": args.batch, "results": results}, indent=1))
    print(f"\nmachine: {machine_info()['cpu']}, batch {args.batch}, {threads} threads\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
