"""Frames in, people out: the speed of the whole `track --detector` pipeline, per stage.

On a 640×480 synthetic sequence (``synth-mot --preset street640``: up to 8 people), each
detector back-end runs the full loop: decode the frame (JPEG), detect the people, run the
four-task network on them (``Predictor``), update the tracker (BotSort with personkit
embeddings) and write the annotated frame (H.264, PyAV). Per stage it reports the median
milliseconds per frame over ``--repeats`` passes, and end to end the frames/s and its ratio
against the baseline measured in the same run: the same pipeline fed the sequence's
ground-truth-derived ``det.txt`` (no detector).

Real-time mode: the newest-frame-wins queue of live sources
(``personkit.track.live.RealtimeFrames``) fed frames at ``--live-fps`` (25); the drop rate is
what the consumer (detect, network, tracker) could not keep up with.

Usage::

    python benchmarks/bench_pipeline.py RUN --detector DETRUN [--detector DETRUN@torch]
        [--detector X.onnx ...]
        [--frames 100] [--repeats 3] [--out benchmarks/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from personkit.data.mot import read_detections
from personkit.inference import Predictor
from personkit.inference.detectors import open_detector
from personkit.inference.sources import read_image
from personkit.runtime import describe_machine, machine_info
from personkit.synth.mot import write_mot_sequence
from personkit.track import Tracker
from personkit.track.io import VideoWriter
from personkit.track.live import RealtimeFrames
from personkit.track.run import draw_tracks

STAGES = ("decode", "detect", "network", "tracker", "write")


def run_once(predictor: Predictor, detector, images: list[Path], dets, out: Path
             ) -> dict[str, float]:
    """Seconds per stage over the sequence (``detector`` None: boxes from ``dets``)."""
    tracker = Tracker(predictor, "botsort", "personkit", frame_rate=25)
    seconds = dict.fromkeys(STAGES, 0.0)
    writer = VideoWriter(out, 25)
    for t, path in enumerate(images, start=1):
        t0 = time.perf_counter()
        image = read_image(path)
        t1 = time.perf_counter()
        if detector is None:
            boxes, scores = dets.frame(t)
        else:
            found = detector.detect([image])[0]
            boxes, scores = found[:, :4].astype(np.float64), found[:, 4].astype(np.float64)
        t2 = time.perf_counter()
        before = dict(tracker.seconds)
        ft = tracker.update(image, boxes, scores, frame=t)
        t3 = time.perf_counter()
        writer.write(draw_tracks(image, ft))
        t4 = time.perf_counter()
        net = tracker.seconds["network"] - before["network"]
        seconds["decode"] += t1 - t0
        seconds["detect"] += t2 - t1
        seconds["network"] += net
        seconds["tracker"] += (t3 - t2) - net
        seconds["write"] += t4 - t3
    writer.close()
    return seconds


def paced(frames: list[np.ndarray], fps: float) -> Iterator[np.ndarray]:
    """``frames`` at ``fps``, as a camera or stream delivers them."""
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        time.sleep(max(0.0, start + i / fps - time.perf_counter()))
        yield frame


def live_drop_rate(predictor: Predictor, detector, images: list[Path], fps: float) -> dict:
    """Decoded frames fed at ``fps`` through the live sources' real-time queue
    (:class:`~personkit.track.live.RealtimeFrames`); the consumer detects, runs the network
    and tracks; returns the decoded, dropped and processed counts."""
    live = RealtimeFrames(paced([read_image(p) for p in images], fps), int(fps))
    tracker = Tracker(predictor, "botsort", "personkit", frame_rate=int(fps))
    processed = 0
    for t, image in live:
        found = detector.detect([image])[0]
        tracker.update(image, found[:, :4].astype(np.float64), found[:, 4].astype(np.float64),
                       frame=t)
        processed += 1
    return {"input_fps": fps, "decoded": live.decoded, "dropped": live.dropped,
            "processed": processed, "drop_rate": live.dropped / max(1, live.decoded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="the four-task model (run directory)")
    parser.add_argument("--detector", action="append", default=[],
                        help="a detector (repeatable): train-detector run, .onnx, or a "
                        "torchvision NAME[:random]")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live-fps", type=float, default=25.0)
    parser.add_argument("--score", type=float, default=0.5, help="detector score threshold")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()

    predictor = Predictor.from_checkpoint(args.run, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        seq = write_mot_sequence(Path(tmp) / "street640", "street640", seed=0)
        images = sorted((seq / "img1").iterdir())[:args.frames]
        dets = read_detections(seq / "det" / "det.txt")
        rows = {}
        for name in ["det.txt", *args.detector]:
            spec, _, engine = name.partition("@")  # RUN@torch: a trained detector in PyTorch
            detector = None if name == "det.txt" else open_detector(spec, "cpu", args.score,
                                                                     engine=engine or "auto")
            runs = [run_once(predictor, detector, images, dets, Path(tmp) / "out.mp4")
                    for _ in range(args.repeats)]
            stage = {s: 1000 * statistics.median(r[s] for r in runs) / len(images)
                     for s in STAGES}
            total = statistics.median(sum(r.values()) for r in runs)
            rows[name] = {"ms_per_frame": stage, "fps": len(images) / total}
            if detector is not None:
                rows[name]["live"] = live_drop_rate(predictor, detector, images, args.live_fps)
            print(f"{name}: {rows[name]['fps']:.1f} frames/s  " + "  ".join(
                f"{s} {v:.1f} ms" for s, v in stage.items()), flush=True)
    base = rows["det.txt"]["fps"]
    for row in rows.values():
        row["ratio_vs_det_txt"] = row["fps"] / base
    info = machine_info()
    report = {"machine": describe_machine(info), "frames": len(images),
              "repeats": args.repeats, "command": " ".join(sys.argv), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"machine: {report['machine']}\nwrote {args.out}")


if __name__ == "__main__":
    main()
