"""A first bf16 probe (issue 27): the four-task model in fp32 and bf16 on this CPU, eager
PyTorch (``torch.autocast("cpu", torch.bfloat16)``) and OpenVINO (``INFERENCE_PRECISION_HINT``
``f32`` / ``bf16``), speed and how far bf16's outputs move from fp32's.

Crops: the first ``--crops`` images of a folder (default: the demo's Market-like query set),
preprocessed as the Predictor does. Speed: crops/s of one forward pass of all four heads at
batch 1 and 10, median of ``--repeats`` rounds of ``--iters`` passes each, engines interleaved
round-robin; the ratio is against torch fp32 measured in the same run. Agreement with each
engine's own fp32: the relative L2 difference of the embeddings (median and max over crops),
the share of attribute labels (and, for torch, part-map pixels) that are the same, and the mean
keypoint move in crop-normalised coordinates.

Usage::

    python benchmarks/bench_bf16.py runs/demo/run [--crops 64] [--repeats 5]
        [--out benchmarks/results/bf16.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from personkit.data.io import read_image
from personkit.inference import Predictor
from personkit.inference.backends import OpenVINOEngine, TorchEngine
from personkit.inference.export import export_onnx
from personkit.inference.preprocess import crop_box
from personkit.models.loading import load_model
from personkit.runtime import describe_machine, machine_info, resolve_device

HEADS = ("reid", "attributes", "pose", "segmentation")


def crops(folder: Path, n: int, predictor: Predictor) -> np.ndarray:
    paths = sorted(folder.glob("*.jpg"))[:n]
    images = [read_image(p) for p in paths]
    batch = [crop_box(im, (0, 0, im.shape[1], im.shape[0]), predictor.input_size)
             for im in images]
    return predictor.normalise(np.stack(batch))


def timed(engine, x: np.ndarray, batch: int, iters: int) -> float:
    """Seconds per crop of ``iters`` passes at ``batch``."""
    start = time.perf_counter()
    for i in range(iters):
        j = (i * batch) % (len(x) - batch + 1)
        engine.run(x[j:j + batch], HEADS)
    return (time.perf_counter() - start) / (iters * batch)


def agreement(ref: dict, got: dict) -> dict:
    e0, e1 = ref["embedding"], got["embedding"]
    rel = np.linalg.norm(e1 - e0, axis=1) / np.linalg.norm(e0, axis=1)
    attrs = [k for k in ref if k.startswith("attr")]
    same = np.mean([np.mean(ref[k].argmax(1) == got[k].argmax(1)) for k in attrs])
    kp_keys = [k for k in ref if "keypoint" in k and ref[k].ndim == 3]
    out = {"embedding_rel_diff_median": float(np.median(rel)),
           "embedding_rel_diff_max": float(rel.max()), "attribute_labels_same": float(same)}
    if kp_keys:
        # keypoints are in crop-normalised coordinates: × the crop height (256) for pixels
        out["keypoint_move"] = float(np.mean(np.abs(ref[kp_keys[0]] - got[kp_keys[0]])))
    if "part_labels" in ref:
        out["part_pixels_same"] = float(np.mean(ref["part_labels"] == got["part_labels"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--crops-from", default="runs/demo/data/Market-1501-v15.09.15/query")
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--out", default="benchmarks/results/bf16.json")
    args = p.parse_args()
    predictor = Predictor.from_checkpoint(args.run, "cpu")
    x = crops(Path(args.crops_from), args.crops, predictor)
    model = load_model(args.run, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_onnx(model, Path(tmp) / "model.onnx")
        cpu = resolve_device("cpu")
        engines = {"torch fp32": TorchEngine(model, cpu, "fp32"),
                   "torch bf16": TorchEngine(model, cpu, "bf16"),
                   "openvino f32": OpenVINOEngine(onnx, precision="f32"),
                   "openvino bf16": OpenVINOEngine(onnx, precision="bf16")}
        actual = {n: e.compiled.get_property("INFERENCE_PRECISION_HINT")
                  for n, e in engines.items() if isinstance(e, OpenVINOEngine)}
        outputs = {n: e.run(x, HEADS) for n, e in engines.items()}
        result = {"machine": describe_machine(machine_info()), "crops": len(x),
                  "openvino_precision": {k: str(v) for k, v in actual.items()},
                  "agreement": {"torch bf16 vs torch fp32": agreement(outputs["torch fp32"],
                                                                    outputs["torch bf16"]),
                                "openvino bf16 vs openvino f32": agreement(
                                    outputs["openvino f32"], outputs["openvino bf16"])},
                  "crops_per_s": {}}
        for batch in (1, 10):
            times: dict[str, list[float]] = {n: [] for n in engines}
            for e in engines.values():  # warm-up
                timed(e, x, batch, 2)
            for _ in range(args.repeats):
                for n, e in engines.items():
                    times[n].append(timed(e, x, batch, args.iters))
            rate = {n: 1.0 / statistics.median(t) for n, t in times.items()}
            result["crops_per_s"][str(batch)] = {
                n: {"crops_per_s": round(r, 1), "vs_torch_fp32": round(r / rate["torch fp32"], 2)}
                for n, r in rate.items()}
            print(batch, json.dumps(result["crops_per_s"][str(batch)]), flush=True)
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
