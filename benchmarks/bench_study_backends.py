"""A study under both back-ends (issue 39): ``--backend local --jobs 2`` against
``--backend ray`` (a local Ray with the machine's cores, 1 CPU per job), and what Ray costs.

Each repeat times a local Ray's start, first task and stop, then runs the spec from scratch
under each back-end (interleaved, so that a change of the machine's load hits both), then
once more with every job recorded (a rerun: no Ray is started when nothing is left to run).
The synthetic world is made once, before any timing, and shared by every run (a copy of the
spec points ``world.dir`` at it). Reported, per back-end: the median wall time; the median
time outside the jobs (wall minus the run's own job times scheduled in spec order on the
machine's cores: process and Ray start-up, workers' imports, the report, Ray's stop), which
the machine's load shifts far less than the jobs themselves; the rerun; the most jobs that ran
at once; each job's median seconds; and an estimate of the wall time on N such nodes from
the jobs' times under Ray (the same schedule over N times the slots, plus the median time
outside the jobs, assumed constant), for the spec and for its rows with more seeds.

Usage:
    python benchmarks/bench_study_backends.py [--spec configs/study/quick.yaml] [--repeats 3]
        [--work runs/bench-study-backends] [--json results.json] [--nodes 1,2,4,8]
        [--seeds-estimate 10] [--report-only]
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

from personkit.checkpoint import write_json
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
    """The most jobs that ran at the same time, from the records (finish time, seconds); the
    finish time is to the second (truncated), so each span is taken 1 s shorter."""
    spans = []
    for r in records:
        end = time.mktime(time.strptime(r["finished"], "%Y-%m-%d %H:%M:%S"))
        spans += [(end + 1 - r["seconds"]["total"], 1), (end, -1)]
    now = peak = 0
    for _, step in sorted(spans):
        now += step
        peak = max(peak, now)
    return peak


def measure(spec: Path, work: Path, repeats: int) -> None:
    """Each repeat: a local Ray's start and stop, then the spec from scratch under each
    back-end and its rerun; each run's timings go to ``timing.json`` beside its records."""
    for r in range(repeats):
        start_stop = ray_start_stop()
        for name, args in BACKENDS.items():
            out = work / f"{name.split()[0]}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            wall = run(spec, out, args)
            rerun = run(spec, out, args)  # every job recorded: all skipped
            shutil.rmtree(out / "runs")  # weights and checkpoints (results.jsonl is kept)
            write_json(out / "timing.json", {"backend": name, "repeat": r, "wall": wall,
                                             "rerun": rerun, "load": load,
                                             "ray_start_stop": start_stop})
            print(f"repeat {r + 1}/{repeats} {name}: {wall:.1f} s, rerun {rerun:.1f} s "
                  f"(load {load:.2f})", flush=True)


def collect(spec: Path, work: Path) -> dict:
    """Every run of ``work``: its timings, its jobs' seconds, the most jobs at once and the
    time outside its jobs (wall - its jobs' schedule on this machine's slots)."""
    study = load_study(spec, work / "estimate")
    deps, slots = job_dependencies(study.jobs), max(1, cpu_count())
    runs = []
    for path in sorted(work.glob("*/timing.json")):
        run_ = json.loads(path.read_text(encoding="utf-8"))
        records = read_results(path.parent / "results.jsonl")
        jobs = {f"{r['row']} seed {r['seed']}": r["seconds"]["total"] for r in records}
        durations = [jobs[f"{j.row} seed {j.seed}"] for j in study.jobs]
        runs.append({**run_, "jobs": jobs, "most_at_once": most_at_once(records),
                     "outside": run_["wall"] - schedule(durations, deps, slots)})
    return {"runs": runs, "machine": describe_machine(machine_info()),
            "order": [f"{j.row} seed {j.seed}" for j in study.jobs]}


def _with_seeds(spec: Path, seeds: int) -> Path:
    """A copy of ``spec`` with ``seeds`` seeds on every row."""
    raw = yaml.safe_load(spec.read_text(encoding="utf-8"))
    raw.setdefault("defaults", {})["seeds"] = list(range(seeds))
    for row in raw["rows"]:
        row.pop("seeds", None)
    copy = spec.with_name(f"{spec.stem}-{seeds}seeds.yaml")
    copy.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return copy


def estimate(spec: Path, work: Path, result: dict, nodes: list[int],
             seeds: int) -> dict[str, dict[int, float]]:
    """Estimated wall time on N nodes with this machine's job slots each: the spec and the
    same rows with ``seeds`` seeds, each job its row's median seconds under Ray, plus the
    median time outside the jobs of the Ray runs (assumed constant)."""
    ray = [r for r in result["runs"] if r["backend"] == "ray"]
    rows: dict[str, list[float]] = {}
    for r in ray:
        for key, seconds in r["jobs"].items():
            rows.setdefault(key.rsplit(" seed ", 1)[0], []).append(seconds)
    outside = statistics.median(r["outside"] for r in ray)
    slots = max(1, cpu_count())
    cases = {}
    for path in [spec] + ([_with_seeds(spec, seeds)] if seeds else []):
        jobs = load_study(path, work / "estimate").jobs
        d = [statistics.median(rows[j.row]) for j in jobs]
        name = f"{len(jobs)} jobs" + (" (the spec)" if path == spec else f" ({seeds} seeds a row)")
        cases[name] = {n: outside + schedule(d, job_dependencies(jobs), n * slots)
                       for n in nodes}
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", type=Path, default=REPO / "configs" / "study" / "quick.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench-study-backends",
                    help="the world and each run's results.jsonl, log and timing.json (its run "
                    "directories are deleted)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--nodes", default="1,2,4,8")
    ap.add_argument("--seeds-estimate", type=int, default=10,
                    help="also estimate the spec's rows with this many seeds each (0: no)")
    ap.add_argument("--report-only", action="store_true",
                    help="report the runs already in --work instead of measuring")
    a = ap.parse_args()
    work = a.work.resolve()
    spec = prepare(a.spec, work)
    if not a.report_only:
        measure(spec, work, a.repeats)
    result = collect(spec, work)
    result["estimate"] = estimate(spec, work, result, [int(n) for n in a.nodes.split(",")],
                                  a.seeds_estimate)
    report(result)
    if a.json:
        write_json(a.json, result, indent=1)


def report(result: dict) -> None:
    """The Markdown tables of benchmarks/RESULTS.md."""
    by = {b: [r for r in result["runs"] if r["backend"] == b] for b in BACKENDS}
    loads = [r["load"] for r in result["runs"]]
    print(f"\n{result['machine']}; load average at the starts {min(loads):.2f}-{max(loads):.2f}")
    print("| back-end | wall, median (each run) | outside the jobs, median (each) | rerun, all "
          "recorded | most jobs at once |\n|---|---|---|---|---|")
    for b, runs in by.items():
        def cell(key: str, runs: list = runs) -> str:
            values = [r[key] for r in runs]
            return (f"{statistics.median(values):.0f} s ({', '.join(f'{v:.0f}' for v in values)})")
        print(f"| {b} | {cell('wall')} | {cell('outside')} | "
              f"{statistics.median(r['rerun'] for r in runs):.1f} s | "
              f"{max(r['most_at_once'] for r in runs)} |")
    timed = [r["ray_start_stop"] for r in by["ray"] if r.get("ray_start_stop")]
    if timed:
        parts = [statistics.median(x) for x in zip(*timed, strict=True)]
        print(f"\nA local Ray ({len(timed)} times): start {parts[0]:.1f} s, first task "
              f"{parts[1]:.1f} s, stop {parts[2]:.1f} s (medians)")
    jobs: dict[str, dict[str, list[float]]] = {}
    for b, runs in by.items():
        for r in runs:
            for key, seconds in r["jobs"].items():
                jobs.setdefault(key, {}).setdefault(b, []).append(seconds)
    print("\n| job | " + " | ".join(f"{b}: seconds, median" for b in BACKENDS)
          + " |\n|---|" + "---|" * len(BACKENDS))
    for key in result["order"]:
        per = jobs[key]
        print(f"| {key} | " + " | ".join(f"{statistics.median(per[b]):.0f}" for b in BACKENDS)
              + " |")
    cases = list(result["estimate"])
    print(f"\n| nodes ({cpu_count()} job slots each) | " + " | ".join(cases) + " |\n|---|"
          + "---|" * len(cases))
    for n in result["estimate"][cases[0]]:
        print(f"| {n} | " + " | ".join(f"{result['estimate'][c][n] / 60:.1f} min"
                                       for c in cases) + " |")


if __name__ == "__main__":
    main()
