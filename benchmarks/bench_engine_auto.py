"""``personkit track`` with the default ``--engine auto`` against ``--engine torch`` (issue 38):
the same command line, one process per run as a user starts it, the runs of both alternated
(so that load from other processes spreads over both); per engine the median of the runs'
frames/s (the tracking loop's own wall time, ``summary.json``'s ``fps``), of the network's
milliseconds a frame and of the whole process's wall seconds (start-up included), and the
ratio of the medians. The engine each run used is read back from ``summary.json``.

    python benchmarks/bench_engine_auto.py RUN SEQUENCE [--runs 5] [--extra "--detector D"]
        [--baseline-extra "--detector D0"] [--quiet-load 1.5]
        [--out benchmarks/results/engine_auto.json]

``--baseline-extra ARGS``: the baseline is the default command (``--engine auto`` too) with
these options in place of ``--extra``'s, e.g. one detector run against another.

On a machine shared with other processes, ``--quiet-load L`` waits (up to ``--max-wait``
seconds) before each run until the 1-minute load average is below ``L``; each run records
the load average it started at.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def track_once(run: str, sequence: str, engine: str | None, extra: list[str],
               out: Path) -> dict:
    """One ``personkit track`` process; its speed and the engine that ran."""
    argv = [sys.executable, "-m", "personkit", "track", "--model", run, sequence, "--out",
            str(out), "--overwrite", "--no-progress", *extra,
            *(["--engine", engine] if engine else [])]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{shlex.join(argv)} failed: {done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    frames = summary["frames"]
    return {"fps": summary["fps"]["total"], "wall_s": wall,
            "network_ms": 1e3 * summary["seconds"]["network"] / frames,
            "engine": summary["engine"],
            "line": next((ln for ln in done.stderr.splitlines() if "engine auto:" in ln), None),
            "detector_line": next((ln for ln in done.stderr.splitlines()
                                   if "detector auto:" in ln), None)}


def wait_for_quiet(below: float | None, max_wait: float) -> float:
    """Wait until the 1-minute load average is below ``below`` (at most ``max_wait`` s);
    returns the load average then."""
    start = time.monotonic()
    while below is not None and os.getloadavg()[0] >= below \
            and time.monotonic() - start < max_wait:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    from personkit.runtime import describe_machine, machine_info

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("sequence")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--extra", default="", help="more track options, e.g. '--detector D'")
    p.add_argument("--baseline-extra", default=None,
                   help="the baseline: --engine auto with these options instead of --extra's "
                        "(default: --engine torch with --extra's)")
    p.add_argument("--quiet-load", type=float, default=None)
    p.add_argument("--max-wait", type=float, default=900)
    p.add_argument("--out", default="benchmarks/results/engine_auto.json")
    args = p.parse_args()
    extra = shlex.split(args.extra)
    base = "torch" if args.baseline_extra is None else "baseline"
    cases = {"auto": (None, extra), base: (
        ("torch", extra) if args.baseline_extra is None
        else (None, shlex.split(args.baseline_extra)))}
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name in (("auto", base) if i % 2 == 0 else (base, "auto")):
                load = wait_for_quiet(args.quiet_load, args.max_wait)
                engine, options = cases[name]
                got = track_once(args.run, args.sequence, engine, options, Path(tmp) / name)
                got["load_at_start"] = load
                runs[name].append(got)
                print(f"{name} run {i + 1}: {got['fps']:.1f} frames/s, network "
                      f"{got['network_ms']:.1f} ms a frame, {got['wall_s']:.1f} s wall, load "
                      f"{load:.2f} at its start", flush=True)
    medians = {name: {k: statistics.median(r[k] for r in rs)
                      for k in ("fps", "network_ms", "wall_s")} for name, rs in runs.items()}
    best = {name: {"fps": max(r["fps"] for r in rs),  # the runs least slowed by others
                   "network_ms": min(r["network_ms"] for r in rs)} for name, rs in runs.items()}
    result = {"machine": describe_machine(machine_info()), "command": sys.argv,
              "baseline": base, "medians": medians, "best": best,
              "ratio_fps": medians["auto"]["fps"] / medians[base]["fps"],
              "ratio_fps_best": best["auto"]["fps"] / best[base]["fps"],
              "ratio_network": medians[base]["network_ms"] / medians["auto"]["network_ms"],
              "engine_auto": runs["auto"][0]["engine"], "line": runs["auto"][0]["line"],
              "detector_lines": {name: rs[0]["detector_line"] for name, rs in runs.items()},
              "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("machine", "medians", "best", "ratio_fps",
                                             "ratio_fps_best", "ratio_network", "line",
                                             "detector_lines")},
                     indent=1))


if __name__ == "__main__":
    main()
