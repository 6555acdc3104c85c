"""``personkit study --jobs N``: independent jobs of a study in parallel child processes.

The parent schedules the jobs over N slots in the order :func:`spec.job_dependencies`
allows, starts each as ``python -m personkit study SPEC --out DIR --job ROW:SEED`` (a hidden
option that runs exactly that job and writes its record to ``study_record.json`` in the job's
run directory) and alone appends the records to ``results.jsonl``. Each child gets
``OMP_NUM_THREADS = cores // N`` and, with CUDA devices, one device per slot, unless the user
set those variables; its output goes to ``study.log`` in its run directory. On a 2-core CPU two
one-thread trainings should give up to ~1.3x the throughput of one two-thread training (one
thread runs a training step at 0.62-0.68x the two-thread speed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from personkit.checkpoint import write_json
from personkit.report import to_jsonable
from personkit.runtime import cpu_count, cuda_device_count, die_with_parent
from personkit.study.jobs import JOBS_VAR, _append, _prepare_run_dir, _run_job, job_dir
from personkit.study.spec import Job, Study, StudyError, job_dependencies, load_study

RECORD = "study_record.json"
PARENT_VAR = "PERSONKIT_STUDY_PARENT"
LOG = "study.log"
STOP_WAIT_S = 10.0  # after SIGTERM, how long a child may take before it is killed


@dataclass
class _Running:
    index: int
    slot: int
    proc: subprocess.Popen
    log: IO[str]
    t0: float


def slot_env(slot: int, jobs: int, environ: dict[str, str] | None = None,
             cpus: int | None = None, cuda_devices: int = 0) -> dict[str, str]:
    """The environment of a child in ``slot``: ``OMP_NUM_THREADS = max(1, cpus // jobs)`` and,
    when CUDA devices are visible, ``CUDA_VISIBLE_DEVICES = slot % devices``; progress bars
    update every 10 s (``TQDM_MININTERVAL``, read by tqdm). A variable the user set is kept."""
    env = dict(os.environ if environ is None else environ)
    cpus = cpus or cpu_count()
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, cpus // jobs))
    if cuda_devices and jobs > 1 and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % cuda_devices)
    env.setdefault("TQDM_MININTERVAL", "10")  # a progress line every 10 s in the log
    env[JOBS_VAR] = str(jobs)  # recorded with each run (the report says how runs shared)
    env[PARENT_VAR] = str(os.getpid())  # the child dies with this process
    env["PYTHONUNBUFFERED"] = "1"  # the log follows the run
    return env


def run_parallel(study: Study, todo: list[int], jobs: int, results_path: Path,
                 progress: bool) -> tuple[int, list[str]]:
    """Run the jobs ``todo`` (indices into ``study.jobs``) over ``jobs`` slots; returns the
    number that finished and one message per failed or not started job."""
    cuda = cuda_device_count()
    env0 = slot_env(0, jobs, cuda_devices=cuda)
    print(f"running up to {jobs} jobs at a time; each with OMP_NUM_THREADS="
          f"{env0['OMP_NUM_THREADS']}" + (f", one of {cuda} CUDA devices per slot"
                                          if cuda and "CUDA_VISIBLE_DEVICES" not in os.environ
                                          else ""), flush=True)
    sched = _Scheduler(study, todo, jobs, results_path, progress, cuda)
    stop = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if stop else None
    try:
        sched.loop()
    finally:
        sched.stop_all()
        if stop:
            signal.signal(signal.SIGTERM, old)
    return sched.ran, sched.messages


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class _Scheduler:
    """Start each job when its dependencies finished and a slot is free; record results."""

    def __init__(self, study: Study, todo: list[int], jobs: int, results_path: Path,
                 progress: bool, cuda: int) -> None:
        self.study, self.jobs, self.results_path = study, jobs, results_path
        self.progress, self.cuda = progress, cuda
        deps = job_dependencies(study.jobs)
        wanted = set(todo)
        self.waits = {i: deps[i] & wanted for i in todo}  # skipped jobs count as done
        self.pending = list(todo)
        self.running: list[_Running] = []
        self.finished: set[int] = set()
        self.failed: set[int] = set()
        self.ran = 0
        self.messages: list[str] = []

    def head(self, i: int) -> str:
        job = self.study.jobs[i]
        return f"[{i + 1}/{len(self.study.jobs)}] {job.row} seed {job.seed}"

    def loop(self) -> None:
        while self.pending or self.running:
            self.start_ready()
            if not self.reap():
                time.sleep(0.2)

    def start_ready(self) -> None:
        for i in list(self.pending):
            if self.waits[i] & self.failed:
                self.pending.remove(i)
                self.failed.add(i)  # so that its own dependents are not started either
                up = self.study.jobs[min(self.waits[i] & self.failed)]
                msg = f"{self.head(i)}: not started (waits for {up.row} seed {up.seed}, failed)"
                print(msg, flush=True)
                self.messages.append(f"row {self.study.jobs[i].row} seed "
                                     f"{self.study.jobs[i].seed} not started")
            elif self.waits[i] <= self.finished and len(self.running) < self.jobs:
                self.pending.remove(i)
                self.start(i)

    def start(self, i: int) -> None:
        job = self.study.jobs[i]
        slot = min(set(range(self.jobs)) - {r.slot for r in self.running})
        rdir = _prepare_run_dir(job, self.study.out)
        (rdir / RECORD).unlink(missing_ok=True)
        log = open(rdir / LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in reap/stop_all)
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} personkit study --job "
                  f"{job.row}:{job.seed} (slot {slot})\n")
        log.flush()
        cmd = [sys.executable, "-m", "personkit", "study", str(self.study.spec_path.resolve()),
               "--out", str(self.study.out), "--job", f"{job.row}:{job.seed}"]
        if not self.progress:
            cmd.append("--no-progress")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=slot_env(slot, self.jobs, cuda_devices=self.cuda))
        self.running.append(_Running(i, slot, proc, log, time.perf_counter()))
        print(f"{self.head(i)}: {job.kind} ... (slot {slot}, log: {rdir / LOG})", flush=True)

    def reap(self) -> bool:
        """Record the children that exited; True when any did."""
        done = [r for r in self.running if r.proc.poll() is not None]
        for r in done:
            self.running.remove(r)
            r.log.close()
            self.finish(r)
        return bool(done)

    def finish(self, r: _Running) -> None:
        job = self.study.jobs[r.index]
        rdir = job_dir(job, self.study.out)
        seconds = time.perf_counter() - r.t0
        record = _read_record(rdir / RECORD, job) if r.proc.returncode == 0 else None
        if record is None:
            self.failed.add(r.index)
            print(f"{self.head(r.index)}: FAILED (exit {r.proc.returncode}) after {seconds:.0f} s"
                  f"; log: {rdir / LOG}", flush=True)
            self.messages.append(f"row {job.row} seed {job.seed} failed (exit "
                                 f"{r.proc.returncode}); its log: {rdir / LOG}")
            return
        _append(self.results_path, record)
        (rdir / RECORD).unlink()
        self.finished.add(r.index)
        self.ran += 1
        print(f"{self.head(r.index)}: finished in {record['seconds']['total']:.0f} s "
              f"(slot {r.slot})", flush=True)

    def stop_all(self) -> None:
        """Terminate the children still running (an interrupt): their process groups get
        SIGTERM, then SIGKILL after STOP_WAIT_S; their jobs stay unrecorded."""
        for r in self.running:
            _signal_group(r.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for r in self.running:
            try:
                r.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(r.proc, signal.SIGKILL)
                r.proc.wait()
            r.log.close()
            print(f"{self.head(r.index)}: stopped (rerun to resume)", flush=True)
        self.running = []


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _read_record(path: Path, job: Job) -> dict[str, Any] | None:
    """The child's record, or None when it wrote none or one for another config."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("config_hash") != job.config_hash:
        print(f"{path}: config hash {record.get('config_hash')} is not the spec's "
              f"{job.config_hash} (was the spec edited while the study ran?)", flush=True)
        return None
    return record


def run_one_job(spec: str | Path, out: str | Path, row_seed: str, progress: bool) -> Path:
    """The child side of ``--jobs N`` (``personkit study SPEC --out DIR --job ROW:SEED``): run
    that job in this process and write its record to ``study_record.json`` in its run dir."""
    # an orphan would train on, and a rerun would start a second trainer in its run dir
    die_with_parent(int(os.environ.get(PARENT_VAR, "0")) or None)
    row, _, seed = row_seed.rpartition(":")
    study = load_study(spec, out)
    job = next((j for j in study.jobs if (j.row, str(j.seed)) == (row, seed)), None)
    if job is None:
        raise StudyError(f"--job {row_seed}: no such (row, seed) in {spec}")
    import torch

    print(f"{job.row} seed {job.seed}: {job.kind}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}, torch threads "
          f"{torch.get_num_threads()}, CUDA_VISIBLE_DEVICES="
          f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}", flush=True)
    record = _run_job(job, study.out, 1, progress, job.world_id)
    path = job_dir(job, study.out) / RECORD
    write_json(path, to_jsonable(record), indent=None)
    print(f"{job.row} seed {job.seed}: finished in {record['seconds']['total']:.0f} s; "
          f"record {path}", flush=True)
    return path
