"""One job of a study: its run directory, its training (through
:func:`personkit.engine.launch.train_run`) or ``personkit annotate`` step, its evaluation with
the official protocols, and the record it appends to ``results.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from personkit.checkpoint import list_checkpoints
from personkit.config import save_config
from personkit.engine.evaluate import run_evaluation
from personkit.engine.launch import train_run
from personkit.metrics.annotations import score_annotations
from personkit.models.loading import load_model_and_config
from personkit.report import to_jsonable
from personkit.runtime import resolve_device
from personkit.study.spec import Job, StudyError, run_dir

#: Set by ``--jobs N`` in each child: how many jobs ran at a time (recorded with each run).
JOBS_VAR = "PERSONKIT_STUDY_JOBS"


class StudyRunError(RuntimeError):
    """Jobs of a parallel study (``--jobs N``) failed; the message names each and its log."""


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` (a torn last line of a killed study is ignored)."""
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i < len(lines) - 1:
                raise StudyError(f"{path}:{i + 1}: not JSON ({e})") from e
    return out


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a killed study left half-written, so appends start clean."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            path.write_bytes(data[:data.rfind(b"\n") + 1])


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(record)) + "\n")
        f.flush()


def _prepare_run_dir(job: Job, out: Path) -> Path:
    """The job's run directory, emptied when it holds an earlier config of the row (or of a row
    it builds on); a training row's config and hash are written into it."""
    rdir = run_dir(out, job.row, job.seed)
    key = rdir / "study_hash.txt"
    if job.kind == "annotate":
        rdir.mkdir(parents=True, exist_ok=True)  # for --jobs N: its log and record
        return rdir
    if rdir.exists() and not (key.is_file() and key.read_text().strip() == job.config_hash):
        shutil.rmtree(rdir)  # an earlier config of this row (or of a row it builds on)
    rdir.mkdir(parents=True, exist_ok=True)
    save_config(job.config, rdir / "config.yaml")
    key.write_text(job.config_hash + "\n")
    return rdir


def _train(job: Job, out: Path, nproc: int, progress: bool) -> dict[str, Any]:
    """Train one row (in-process or under torchrun) and evaluate its weights."""

    rdir = _prepare_run_dir(job, out)
    trained = (rdir / "model.safetensors").is_file()
    # an interrupted run goes on: its time before the interruption is in no record
    interrupted = trained or bool(list_checkpoints(rdir / "checkpoints"))
    t0 = time.perf_counter()
    if not trained:  # (trained: killed before its evaluation was recorded)
        run = train_run(job.config, rdir, resume="auto", nproc=nproc, progress=progress)
        if run.exit_code:
            raise RuntimeError(f"row {job.row} seed {job.seed}: training failed (exit "
                               f"{run.exit_code})")
    t1 = time.perf_counter()
    device = resolve_device(job.config.train.device, "train.device")
    model, cfg = load_model_and_config(rdir, device)
    metrics = run_evaluation(model, cfg, device=device, progress=progress)
    return {"metrics": metrics, "run_dir": str(rdir), "resumed": interrupted,
            "seconds": {"train": t1 - t0, "eval": time.perf_counter() - t1}}


def _run_job(job: Job, out: Path, nproc: int, progress: bool) -> dict[str, Any]:
    """Run one job; its ``results.jsonl`` record (seconds, load average, how the machine was
    shared, metrics, run dir)."""
    import torch

    t0 = time.perf_counter()
    rec = _train(job, out, nproc, progress) if job.kind == "train" else _annotate(job)
    rec["seconds"]["total"] = time.perf_counter() - t0
    rec["loadavg"] = list(os.getloadavg())
    rec["sharing"] = {"jobs": int(os.environ.get(JOBS_VAR, "1")),
                      "threads": torch.get_num_threads()}
    return {"row": job.row, "seed": job.seed, "config_hash": job.config_hash, "kind": job.kind,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **rec}


def _annotate(job: Job) -> dict[str, Any]:
    """Run ``personkit annotate`` in a subprocess, then score it against the hidden truth."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "personkit", *job.command], check=False)
    if done.returncode:
        raise RuntimeError(f"row {job.row}: `personkit {' '.join(job.command)}` failed "
                           f"(exit {done.returncode})")
    record: dict[str, Any] = {"command": "personkit " + " ".join(job.command),
                              "seconds": {"annotate": time.perf_counter() - t0}}
    if job.score_truth:
        auto = job.command[job.command.index("--out") + 1] if "--out" in job.command else None
        if auto is None:
            raise StudyError(f"row {job.row}: score_truth needs an --out folder in annotate")
        record["metrics"] = {"annotations": score_annotations(auto, job.score_truth)}
    return record
