"""The default tracking pipeline with and without its reading thread (issue 38, item 2).

``personkit track RUN SEQUENCE --detector DET`` reads each frame and detects its people in a
thread of its own, a frame or two ahead of the person network and the tracker
(:func:`personkit.track.io.prefetched`); before, the four ran one after the other. This runs
:func:`personkit.track.run.track` in one process on the same opened network (``--engine``,
default ``auto`` as the command) and detector, the two modes alternated ``--repeats`` times
(so that load from other processes spreads over both), and reports per mode the median
frames/s of the tracking loop, its milliseconds a frame per stage (the reading thread's
decode and detect apart), the ratio of the medians, and whether both wrote the same
``results.txt``. Live: the sequence's frames (``img1/``, decoded beforehand) fed at
``--live-fps`` (25) through the live sources' newest-frame-wins queue
(:class:`personkit.track.live.RealtimeFrames`) into the same pipeline; the share of frames
dropped, median of the repeats.

    python benchmarks/bench_overlap.py RUN SEQUENCE --detector DET [--engine auto]
        [--repeats 5] [--threads N] [--out benchmarks/results/overlap.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

MODES = {"sequential": False, "overlapped": True}


def once(predictor, detector, sequence: str, out: Path, overlap: bool) -> dict:
    from personkit.track.run import track

    summary = track(predictor, sequence, out, detector=detector, overwrite=True,
                    overlap=overlap)
    frames = summary["frames"]
    per = {k: round(1e3 * v / frames, 2) for k, v in summary["seconds"].items()
           if k != "total"}
    per.update({f"{k} (reading thread)": round(1e3 * v / frames, 2)
                for k, v in summary.get("seconds_alongside", {}).items()})
    return {"fps": summary["fps"]["total"], "ms": per, "frames": frames,
            "people": summary["detections"],
            "results": (out / "results.txt").read_text(encoding="utf-8")}


def live_once(predictor, detector, frames: list, fps: float, out: Path,
              overlap: bool) -> float:
    """The share of ``frames`` dropped when they arrive at ``fps``."""
    from bench_pipeline import paced  # this folder is on sys.path when run as a script

    from personkit.track import Tracker
    from personkit.track.io import TrackSource
    from personkit.track.live import RealtimeFrames
    from personkit.track.run import track_source

    live = RealtimeFrames(paced(frames, fps), fps)
    source = TrackSource("live", None, fps, None, detector=detector, live=live)
    track_source(Tracker(predictor, "botsort", "personkit", frame_rate=fps), source, out,
                 progress=False, overlap=overlap)
    return live.dropped / max(1, live.decoded)


def main() -> None:
    from personkit.deploy.auto import open_predictor
    from personkit.inference.backends import engine_record
    from personkit.inference.detectors import open_detector
    from personkit.runtime import describe_machine, machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("sequence")
    p.add_argument("--detector", required=True)
    p.add_argument("--engine", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--live-fps", type=float, default=25.0)
    p.add_argument("--out", default="benchmarks/results/overlap.json")
    args = p.parse_args()
    predictor = open_predictor(args.run, args.engine, "cpu", threads=args.threads)
    detector = open_detector(args.detector, "cpu", threads=args.threads)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        once(predictor, detector, args.sequence, Path(tmp) / "warm", True)  # warm-up
        for i in range(args.repeats):
            for mode in (list(MODES) if i % 2 == 0 else list(reversed(MODES))):
                got = once(predictor, detector, args.sequence, Path(tmp) / mode, MODES[mode])
                runs[mode].append(got)
                print(f"{mode} {i + 1}: {got['fps']:.1f} frames/s {got['ms']}", flush=True)
        from personkit.data.io import read_image

        frames = [read_image(f) for f in sorted((Path(args.sequence) / "img1").iterdir())]
        drops: dict[str, list[float]] = {m: [] for m in MODES}
        for i in range(3):
            for mode in (list(MODES) if i % 2 == 0 else list(reversed(MODES))):
                drops[mode].append(live_once(predictor, detector, frames, args.live_fps,
                                             Path(tmp) / f"live-{mode}-{i}", MODES[mode]))
                print(f"live {mode} {i + 1}: {100 * drops[mode][-1]:.1f} % dropped",
                      flush=True)
    same = len({r["results"] for rs in runs.values() for r in rs}) == 1
    medians = {m: {"fps": statistics.median(r["fps"] for r in rs),
                   "ms": {k: statistics.median(r["ms"][k] for r in rs) for k in rs[0]["ms"]}}
               for m, rs in runs.items()}
    result = {"machine": describe_machine(machine_info()),
              "engine": engine_record(predictor.engine),
              "detector": args.detector, "sequence": args.sequence,
              "frames": runs["overlapped"][0]["frames"],
              "people": runs["overlapped"][0]["people"], "medians": medians,
              "ratio_fps": medians["overlapped"]["fps"] / medians["sequential"]["fps"],
              "same_results": same, "live_fps": args.live_fps,
              "live_drop_rate": {m: statistics.median(d) for m, d in drops.items()},
              "threads": args.threads,
              "runs": {m: [{k: v for k, v in r.items() if k != "results"} for r in rs]
                       for m, rs in runs.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("machine", "engine", "medians", "ratio_fps",
                                             "same_results", "live_drop_rate")}, indent=1))


if __name__ == "__main__":
    main()
