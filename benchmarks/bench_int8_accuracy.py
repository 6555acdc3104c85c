"""Accuracy after quantization and in bf16 (issues 15 and 27): the demo model's headline
metrics with the official protocols, through eager PyTorch fp32 (and bf16 autocast), ONNX
Runtime fp32 and int8, OpenVINO fp32, bf16, int8 and int8 with its fp32 islands in bf16 (each
export made per evaluation input size, int8 calibrated on crops of ``--calib-data``), in one
process; writes JSON and prints a markdown table with each variant's loss against PyTorch fp32
in points (target: <= 1.0). Where the CPU has no bf16 instructions OpenVINO runs fp32 and warns.

    OMP_NUM_THREADS=2 python benchmarks/bench_int8_accuracy.py runs/demo/run \
        --calib-data runs/demo/data --out benchmarks/results/int8_accuracy.json
    OMP_NUM_THREADS=2 python benchmarks/bench_int8_accuracy.py runs/demo/run \
        --calib-data runs/demo/data --variants "torch fp32,torch bf16,OpenVINO bf16" \
        --out benchmarks/results/bf16_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: name -> (engine, int8, precision[, NNCF preset])
VARIANTS = {"torch fp32": ("torch", False, "fp32"), "torch bf16": ("torch", False, "bf16"),
            "ONNX Runtime fp32": ("onnxruntime", False, "fp32"),
            "ONNX Runtime int8": ("onnxruntime", True, "fp32"),
            "OpenVINO int8": ("openvino", True, "fp32"),
            "OpenVINO fp32": ("openvino", False, "fp32"),
            "OpenVINO bf16": ("openvino", False, "bf16"),
            "OpenVINO int8 + bf16": ("openvino", True, "bf16"),
            "OpenVINO int8 mixed": ("openvino", True, "fp32", "mixed"),
            "OpenVINO int8 performance": ("openvino", True, "fp32", "performance"),
            "OpenVINO int8 performance + bf16": ("openvino", True, "bf16", "performance")}


def main() -> None:
    from personkit.demo import headline
    from personkit.deploy.engines import evaluation_model
    from personkit.engine.evaluate import run_evaluation
    from personkit.models.loading import load_model_and_config
    from personkit.report import to_jsonable

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run directory or checkpoint (gives data.eval)")
    p.add_argument("--calib-data", required=True, help="folder of images for int8 calibration")
    p.add_argument("--calib-size", type=int, default=300)
    p.add_argument("--variants", default="torch fp32,ONNX Runtime fp32,ONNX Runtime int8,"
                   "OpenVINO int8", help=f"comma-separated, from {list(VARIANTS)}")
    p.add_argument("--keep-fp32", default="", help="comma-separated node-name regexes kept in "
                   "fp32 on top of the defaults, e.g. '.*/backbone/stem/.*'")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="runs/int8_accuracy.json")
    args = p.parse_args()

    model, cfg = load_model_and_config(args.run, "cpu")
    results, scores, seconds = {}, {}, {}
    for name in args.variants.split(","):
        engine, int8, precision, *preset = VARIANTS[name]
        start = time.perf_counter()
        runner = evaluation_model(model, engine, int8=int8, calib_data=args.calib_data,
                                  calib_size=args.calib_size, precision=precision, log=print,
                                  **({"int8_preset": preset[0]} if preset else {}),
                                  keep_fp32=[k for k in args.keep_fp32.split(",") if k])
        results[name] = run_evaluation(runner, cfg, batch_size=args.batch_size, progress=False)
        seconds[name] = time.perf_counter() - start
        scores[name] = headline(results[name])
        print(f"{name}: {scores[name]} ({seconds[name]:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(to_jsonable(
        {"command": vars(args), "headline": scores, "seconds": seconds, "results": results}),
        indent=2))
    print(table(scores))


def table(scores: dict[str, dict[str, float | None]]) -> str:
    """Markdown: one row per metric, one column per variant (value and loss in points)."""
    names = list(scores)
    ref = scores[names[0]]
    lines = ["| metric | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for metric, base in ref.items():
        cells = []
        for name in names:
            v = scores[name][metric]
            if v is None or base is None:
                cells.append("–")
            elif name == names[0]:
                cells.append(f"{v:.3f}")
            else:
                cells.append(f"{v:.3f} ({100 * (v - base):+.1f})")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
