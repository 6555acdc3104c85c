"""int8 closer to the ceiling (issue #27, item 3): OpenVINO int8 variants of one model, timed
in one process against OpenVINO fp32 and eager torch fp32 (the baselines), interleaved
round-robin, median of ``--repeats`` runs per batch size.

Variants: NNCF's ``mixed`` preset (personkit's default: asymmetric activations) and its
``performance`` preset (symmetric activations, no zero-point compensation in the int8
kernels); each compiled with OpenVINO's default fp32 for the layers int8 leaves out (GroupNorm,
the heads kept in fp32) and with the bf16 hint for them (where the CPU has bf16); and the same
network with BatchNorm (folded into the convolutions: no fp32 islands in the trunk).

    OMP_NUM_THREADS=2 python benchmarks/bench_int8_options.py --config default --model reid-only \
        --batch-sizes 1,10 --repeats 10 --out benchmarks/results/int8_options.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def build(config: str, model: str, norm: str):
    from personkit.models.build import build_bench_models
    from personkit.models.loading import model_config_of

    source = None if config == "default" else config
    four, variants = build_bench_models(model_config_of(source, [f"model.backbone.norm={norm}"]))
    return (four if model == "four-task" else variants[model]).eval()


def variants(config: str, model_name: str, tmp: Path, calib, threads: int, bf16: bool) -> dict:
    """label -> a function running one batch, for every variant (see the module docstring)."""
    import torch

    from personkit.deploy.quantize import quantize_openvino
    from personkit.inference.backends import open_export
    from personkit.inference.export import export_onnx, export_openvino

    out = {}
    for norm in ("group", "batch"):
        model = build(config, model_name, norm)
        tag = "GN" if norm == "group" else "BN"
        onnx_path = export_onnx(model, tmp / f"{norm}.onnx")
        xml = export_openvino(model, tmp / f"{norm}-ov", onnx_path=onnx_path)
        engines = {f"{tag} openvino fp32": open_export(xml, "openvino", threads=threads)}
        for preset in ("mixed", "performance"):
            q = quantize_openvino(xml, tmp / f"{norm}-{preset}" / "model.xml", calib,
                                  preset=preset)
            engines[f"{tag} openvino int8 {preset}"] = open_export(q, "openvino",
                                                                   threads=threads)
            if bf16:
                engines[f"{tag} openvino int8 {preset} + bf16"] = open_export(
                    q, "openvino", threads=threads, precision="bf16")
        for label, e in engines.items():
            out[label] = lambda x, e=e: e.run(x, e.heads)
        if norm == "group":
            def eager(x, m=model):
                with torch.inference_mode():
                    return m(torch.from_numpy(x), heads=tuple(m.enabled))
            out["GN torch eager fp32"] = eager
    return out


def main() -> None:
    import numpy as np

    from personkit.deploy.roofline import count_flops, gemm_ceiling, has_bf16
    from personkit.runtime import machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default",
                   help="a YAML config, or 'default': the paper's ResNet-50 GN at 256x128")
    p.add_argument("--model", default="reid-only", choices=("reid-only", "four-task"))
    p.add_argument("--batch-sizes", default="1,10")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="runs/int8_options.json")
    args = p.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count())
    probe = build(args.config, args.model, "group")
    h, w = probe.meta.input_size
    trunk_gflop = count_flops(build(args.config, "four-task", "group"))["trunk"]
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 3, h, w), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="personkit-int8opt-") as tmp:
        runs = variants(args.config, args.model, Path(tmp), calib, threads, has_bf16())
        for b in (int(v) for v in args.batch_sizes.split(",")):
            x = rng.standard_normal((b, 3, h, w), dtype=np.float32)
            times: dict[str, list[float]] = {k: [] for k in runs}
            for fn in runs.values():
                fn(x)  # warm-up
            for k in range(args.repeats):
                for label, fn in (list(runs.items()) if k % 2 == 0 else
                                  list(runs.items())[::-1]):
                    start = time.perf_counter()
                    fn(x)
                    times[label].append(time.perf_counter() - start)
            base = statistics.median(times["GN torch eager fp32"])
            for label, ts in times.items():
                med = statistics.median(ts)
                rows.append({"variant": label, "batch": b, "ms": 1e3 * med,
                             "crops_per_s": b / med, "vs_torch_fp32": base / med,
                             "trunk_gops": trunk_gflop * b / med})
                print(f"batch {b:<3} {label:<40} {1e3 * med:8.1f} ms {b / med:8.1f} crops/s "
                      f"{base / med:5.2f}x torch fp32", flush=True)
    ceiling = gemm_ceiling()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": vars(args), "machine": machine_info(),
                                          "ceiling": ceiling, "rows": rows}, indent=1))
    print(f"\nmachine: {machine_info()['cpu']}; ceiling {ceiling}")
    print("| variant | batch | ms | crops/s | × torch fp32 | trunk GOP/s | % of int8 ceiling |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        share = r["trunk_gops"] / ceiling["int8_gops"] if ceiling.get("int8_gops") else None
        print(f"| {r['variant']} | {r['batch']} | {r['ms']:.1f} | {r['crops_per_s']:.1f} | "
              f"{r['vs_torch_fp32']:.2f} | {r['trunk_gops']:.0f} | "
              + (f"{100 * share:.0f} %" if share else "–") + " |")


if __name__ == "__main__":
    main()
