"""Tracking benchmark: motion only vs personkit embeddings vs random embeddings (a control).

Runs BoxMOT trackers over synthetic crossing-heavy MOT sequences (``personkit synth-mot
--preset crossing``) and scores them with TrackEval (HOTA, IDF1, MOTA, ID switches). The
network runs once per frame (all detections batched) and its results are shared by every
tracker configuration, so the comparison differs only in what the tracker is given. Speeds are
medians over ``--repeats``: the network (``Predictor.predict`` per frame, decoding excluded)
and each tracker's ``update``.

Usage (RUN: a trained run directory, e.g. from ``personkit demo`` or ``personkit train``)::

    python benchmarks/bench_tracking.py RUN [--seeds 0,1,2] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from personkit.inference import Predictor
from personkit.inference.sources import read_image
from personkit.synth.mot import write_mot_sequence
from personkit.track import Tracker
from personkit.track.evaluate import evaluate_mot
from personkit.track.io import open_mot_sequence, write_mot_results

CONFIGS = (("deepocsort", "none"), ("deepocsort", "personkit"), ("deepocsort", "random"),
           ("botsort", "none"), ("botsort", "personkit"), ("botsort", "random"),
           ("bytetrack", "none"))


class _Replay:
    """Stands in for a Predictor: returns the per-frame results computed once beforehand."""

    def __init__(self, predictor: Predictor, results: list[list]):
        self.heads, self.meta, self._results, self._i = predictor.heads, predictor.meta, results, 0

    def predict(self, image, boxes):  # noqa: ARG002 - same signature as Predictor.predict
        out = self._results[self._i]
        self._i += 1
        return out


def network_pass(predictor: Predictor, frames: list) -> tuple[list[list], float]:
    start = time.perf_counter()
    results = [predictor.predict(img, boxes) if len(boxes) else [] for _, img, boxes, _ in frames]
    return results, time.perf_counter() - start


def run_config(predictor, results, frames, name, mode, frame_rate):
    trk = Tracker(_Replay(predictor, results), name, mode, frame_rate=frame_rate)
    rows = []
    for t, img, boxes, scores in frames:
        ft = trk.update(img, boxes, scores, frame=t)
        rows += [(t, int(i), b, float(s)) for i, b, s in zip(ft.track_ids, ft.boxes, ft.scores,
                                                              strict=True)]
    return rows, trk.seconds["tracker"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="trained run directory or checkpoint (needs the ReID head)")
    ap.add_argument("--preset", default="crossing")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.run)
    per_seq, net_fps, trk_fps = [], [], {f"{n}/{m}": [] for n, m in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            seq = write_mot_sequence(Path(tmp) / f"{args.preset}-{seed}", args.preset, seed)
            src = open_mot_sequence(seq)
            frames = [(t, read_image(p), *src.detections.frame(t))
                      for t, p in enumerate(src.image_paths, start=1)]
            times = []
            for _ in range(args.repeats):
                results, sec = network_pass(predictor, frames)
                times.append(sec)
            net_fps.append(len(frames) / statistics.median(times))
            row = {"sequence": seq.name, "frames": len(frames),
                   "detections": int(sum(len(f[2]) for f in frames))}
            for name, mode in CONFIGS:
                secs = []
                for _ in range(args.repeats):
                    rows, sec = run_config(predictor, results, frames, name, mode, src.frame_rate)
                    secs.append(sec)
                trk_fps[f"{name}/{mode}"].append(len(frames) / statistics.median(secs))
                res = write_mot_results(Path(tmp) / f"{seq.name}-{name}-{mode}.txt", rows)
                row[f"{name}/{mode}"] = evaluate_mot(seq / "gt" / "gt.txt", res, len(frames),
                                                     seq.name)
            per_seq.append(row)
            print(json.dumps(row), flush=True)
    mean = {k: {m: float(np.mean([r[k][m] for r in per_seq])) for m in per_seq[0][k]}
            for k in trk_fps}
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "run": args.run,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average": os.getloadavg(), "threads": args.threads,
              "network_fps_median": statistics.median(net_fps),
              "tracker_fps_median": {k: statistics.median(v) for k, v in trk_fps.items()},
              "mean_over_sequences": mean, "sequences": per_seq}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracking.json").write_text(json.dumps(report, indent=1))
    print(f"{'config':<22} {'HOTA':>6} {'IDF1':>6} {'MOTA':>6} {'IDSW':>6} {'tracker fps':>12}")
    for k, m in mean.items():
        print(f"{k:<22} {m['HOTA'] * 100:6.1f} {m['IDF1'] * 100:6.1f} {m['MOTA'] * 100:6.1f} "
              f"{m['IDSW']:6.1f} {report['tracker_fps_median'][k]:12.1f}")
    print(f"network {report['network_fps_median']:.1f} frames/s; wrote {out / 'tracking.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
