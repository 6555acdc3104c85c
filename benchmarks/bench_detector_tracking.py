"""Tracking quality with a detector in the loop: HOTA / IDF1 / MOTA on held-out synthetic
``crossing`` sequences, people found by a trained detector versus the sequence's
ground-truth-derived ``det.txt``, each with personkit embeddings and motion only (BotSort);
with the detector also the network without flip averaging (``--no-flip``) and on the engine
``--engine auto`` picks (issue 38: the fast pipeline's quality against the fp32 one).

Usage::

    python benchmarks/bench_detector_tracking.py RUN --detector DETRUN [--seeds 0,1]
        [--out benchmarks/results/detector_tracking.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from personkit.deploy.auto import open_predictor
from personkit.inference import Predictor
from personkit.inference.detectors import open_detector
from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import write_mot_sequence
from personkit.track import track

KEYS = ("HOTA", "IDF1", "MOTA", "IDSW")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the four-task model (run directory)")
    parser.add_argument("--detector", required=True, help="train-detector run or .onnx")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--out", default="benchmarks/results/detector_tracking.json")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    predictor = Predictor.from_checkpoint(args.run, "cpu")  # loaded once, for every run
    variants = {"personkit, no flip": Predictor.from_checkpoint(args.run, "cpu",
                                                                flip_tta=False)}
    fast = open_predictor(args.run, "auto", "cpu")
    variants[f"personkit, engine auto ({fast.engine.name} {fast.engine.precision})"] = fast
    detector = open_detector(args.detector, "cpu", args.score)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            seq = write_mot_sequence(Path(tmp) / f"crossing-{seed}", "crossing", seed=seed)
            for boxes in ("det.txt", "detector"):
                for embeddings in ("personkit", "none"):
                    summary = track(predictor, seq, Path(tmp) / "out", embeddings=embeddings,
                                    evaluate=True, overwrite=True,
                                    detector=detector if boxes == "detector" else None)
                    row = rows.setdefault(f"{boxes} / {embeddings}", {k: [] for k in KEYS})
                    for k in KEYS:
                        row[k].append(summary["metrics"][k])
                    print(f"seed {seed} {boxes} / {embeddings}: " + "  ".join(
                        f"{k} {summary['metrics'][k]:.3f}" for k in KEYS), flush=True)
            for name, variant in variants.items():
                summary = track(variant, seq, Path(tmp) / "out", evaluate=True,
                                detector=detector, overwrite=True)
                row = rows.setdefault(f"detector / {name}", {k: [] for k in KEYS})
                for k in KEYS:
                    row[k].append(summary["metrics"][k])
                print(f"seed {seed} detector / {name}: " + "  ".join(
                    f"{k} {summary['metrics'][k]:.3f}" for k in KEYS), flush=True)
    table = {name: {k: statistics.mean(v) for k, v in row.items()} for name, row in rows.items()}
    for boxes in ("det.txt", "detector"):
        gain = {k: table[f"{boxes} / personkit"][k] - table[f"{boxes} / none"][k]
                for k in ("HOTA", "IDF1")}
        table[f"{boxes}: embedding gain"] = gain
    report = {"machine": describe_machine(machine_info()), "seeds": args.seeds,
              "detector": args.detector, "command": " ".join(sys.argv), "per_seed": rows,
              "mean": table}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    for name, row in table.items():
        print(f"{name}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
