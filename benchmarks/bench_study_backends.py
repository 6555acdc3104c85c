"""A study under both back-ends (issue 39): ``--backend local --jobs 2`` against
``--backend ray`` (a local Ray with the machine's cores, 1 CPU per job), and what Ray costs.

Each repeat times a local Ray's start, first task and stop, then runs the spec from scratch
under each back-end (interleaved, so that a change of the machine's load hits both), then
once more with every job recorded (a rerun: no Ray is started when nothing is left to run).
The synthetic world is made once, before any timing, and shared by every run (a copy of the
spec points ``world.dir`` at it). Reported: the median wall time of each, Ray's overhead (the
difference of the medians), each job's median seconds under Ray, and an estimate of the wall
time on N such nodes from those job times (a greedy schedule in spec order over the machine's
cores as job slots per node, respecting the jobs' dependencies, plus the measured time outside
the jobs, assumed constant).

Usage:
    python benchmarks/bench_study_backends.py [--spec configs/study/quick.yaml] [--repeats 3]
        [--work runs/bench-study-backends] [--json results.json] [--nodes 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from personkit.runtime import cpu_count, describe_machine, machine_info
from personkit.study import load_study, read_results
from personkit.study.spec import job_dependencies
from personkit.synth import ensure_world

REPO = Path(__file__).resolve().parents[1]
BACKENDS = {"local --jobs 2": ["--jobs", "2"], "ray": ["--backend", "ray"]}


def prepare(spec: Path, work: Path) -> Path:
    """A copy of ``spec`` whose world lives in ``work/world`` (made now) and whose configs
    are absolute paths."""
    raw = yaml.safe_load(spec.read_text(encoding="utf-8"))
    world = raw.get("world") or {}
    raw["world"] = {**world, "dir": str(work / "world")}
    for row in raw["rows"]:
        if row.get("config"):
            row["config"] = str((spec.parent / row["config"]).resolve())
    if raw.get("defaults", {}).get("config"):
        raw["defaults"]["config"] = str((spec.parent / raw["defaults"]["config"]).resolve())
    work.mkdir(parents=True, exist_ok=True)
    copy = work / spec.name
    copy.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    ensure_world(work / "world", world.get("preset", "tiny"), world.get("seed", 0),
                 progress=False, bias=world.get("bias", 0.0))
    return copy


def run(spec: Path, out: Path, args: list[str]) -> float:
    """Wall seconds of one ``personkit study`` command (its output to OUT.log)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.log", "a", encoding="utf-8") as log:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "personkit", "study", str(spec), "--out",
                        str(out), "--no-progress", *args], stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    return time.perf_counter() - t0


START_STOP = """
import json, time, ray
from personkit.runtime import cpu_count
from personkit.study.ray_backend import LOCAL_OBJECT_STORE
t0 = time.perf_counter()
ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=True,
         object_store_memory=LOCAL_OBJECT_STORE, logging_level="ERROR")
t1 = time.perf_counter()
ray.get(ray.remote(lambda: 0).remote())
t2 = time.perf_counter()
ray.shutdown()
print(json.dumps([t1 - t0, t2 - t1, time.perf_counter() - t2]))
"""


def ray_start_stop() -> list[float]:
    """Seconds of a local Ray's start (as --backend ray starts it), its first task, its stop."""
    done = subprocess.run([sys.executable, "-c", START_STOP], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def schedule(durations: list[float], deps: list[set[int]], slots: int) -> float:
    """Makespan of the jobs (spec order, each when its dependencies finished and a slot is
    free: the order both back-ends submit in) on ``slots`` slots."""
    free = [0.0] * slots
    end: list[float] = []
    for i, d in enumerate(durations):
        ready = max((end[j] for j in deps[i]), default=0.0)
        k = min(range(slots), key=lambda s: max(free[s], ready))
        start = max(free[k], ready)
        free[k] = start + d
        end.append(start + d)
    return max(end, default=0.0)


def most_at_once(records: list[dict]) -> int:
    """The most jobs that ran at the same time, from the records (finish time, seconds)."""
    spans = []
    for r in records:
        end = time.mktime(time.strptime(r["finished"], "%Y-%m-%d %H:%M:%S"))
        spans += [(end - r["seconds"]["total"], 1), (end, -1)]
    now = peak = 0
    for _, step in sorted(spans):
        now += step
        peak = max(peak, now)
    return peak


def measure(spec: Path, work: Path, repeats: int) -> dict:
    walls: dict[str, list[float]] = {b: [] for b in BACKENDS}
    fixed: dict[str, list[float]] = {b: [] for b in BACKENDS}
    jobs: dict[str, list[float]] = {}
    loads, start_stop, peaks = [], [], []
    for r in range(repeats):
        start_stop.append(ray_start_stop())
        for name, args in BACKENDS.items():
            out = work / f"{name.split()[0]}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            loads.append(os.getloadavg()[0])
            walls[name].append(run(spec, out, args))
            fixed[name].append(run(spec, out, args))  # every job recorded: skipped
            records = read_results(out / "results.jsonl")
            peaks.append(most_at_once(records))
            print(f"repeat {r + 1}/{repeats} {name}: {walls[name][-1]:.1f} s, all skipped "
                  f"{fixed[name][-1]:.1f} s (load {loads[-1]:.2f}; at most {peaks[-1]} jobs "
                  f"at once)", flush=True)
            if name == "ray":
                for rec in records:
                    jobs.setdefault(f"{rec['row']} seed {rec['seed']}", []).append(
                        rec["seconds"]["total"])
            shutil.rmtree(out / "runs")  # weights and checkpoints (results.jsonl is kept)
    return {"walls": walls, "fixed": fixed, "jobs": jobs, "loads": loads,
            "ray_start_stop": start_stop, "most_at_once": peaks}


def estimate(spec: Path, work: Path, result: dict, nodes: list[int]) -> dict[int, float]:
    """Estimated wall time of the study on N nodes with 2 job slots each."""
    study = load_study(spec, work / "estimate")
    durations = [statistics.median(result["jobs"][f"{j.row} seed {j.seed}"])
                 for j in study.jobs]
    deps = job_dependencies(study.jobs)
    slots = max(1, cpu_count())
    outside = statistics.median(result["walls"]["ray"]) - schedule(durations, deps, slots)
    return {n: outside + schedule(durations, deps, n * slots) for n in nodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=REPO / "configs" / "study" / "quick.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench-study-backends",
                    help="the world and each run's results.jsonl and log (run dirs deleted)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--nodes", default="1,2,4,8")
    a = ap.parse_args()
    spec = prepare(a.spec, a.work.resolve())
    result = measure(spec, a.work.resolve(), a.repeats)
    nodes = [int(n) for n in a.nodes.split(",")]
    result["estimate"] = estimate(spec, a.work.resolve(), result, nodes)
    result["machine"] = describe_machine(machine_info())
    med = {k: statistics.median(v) for k, v in result["walls"].items()}
    fix = {k: statistics.median(v) for k, v in result["fixed"].items()}
    print(f"\n{result['machine']}; {a.repeats} repeats, load average at the starts "
          f"{min(result['loads']):.2f}-{max(result['loads']):.2f}")
    print("| back-end | wall (median) | runs | rerun, all recorded |\n|---|---|---|---|")
    for k in BACKENDS:
        runs = ", ".join(f"{w:.0f}" for w in result["walls"][k])
        print(f"| {k} | {med[k]:.0f} s | {runs} | {fix[k]:.1f} s |")
    parts = [statistics.median(x) for x in zip(*result["ray_start_stop"], strict=True)]
    print(f"\nRay's overhead: {med['ray'] - med['local --jobs 2']:+.0f} s on the whole study; "
          f"a local Ray's start {parts[0]:.1f} s, first task {parts[1]:.1f} s, stop "
          f"{parts[2]:.1f} s (medians)")
    print("\n| job | seconds under Ray (median) |\n|---|---|")
    for k, v in result["jobs"].items():
        print(f"| {k} | {statistics.median(v):.0f} |")
    print("\n| nodes (2 job slots each) | estimated wall |\n|---|---|")
    for n, w in result["estimate"].items():
        print(f"| {n} | {w:.0f} s |")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
