"""One job of a study: its run directory, its training (through
:func:`personkit.engine.launch.train_run`) or ``personkit annotate`` step, its evaluation with
the official protocols, and the record it appends to ``results.jsonl``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from personkit.checkpoint import list_checkpoints, write_text_atomic
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


#: What every record of ``results.jsonl`` holds, with its type.
RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "row": str, "seed": int, "config_hash": str, "kind": str, "seconds": dict}


def _problem(record: Any) -> str | None:
    """Why ``record`` is not a study record (None when it is one)."""
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a record"
    wrong = [k for k, tp in RECORD_TYPES.items() if not isinstance(record.get(k), tp)]
    if wrong:
        return f"missing or mistyped {wrong}"
    if not isinstance(record.get("metrics", {}), dict):
        return "'metrics' is not a mapping"
    return None


def _parse(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """The records of ``path`` and its other lines as (line number, text, why)."""
    records, bad = [], []
    if not path.is_file():
        return records, bad
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append((i, line, f"not JSON ({e.msg})"))
            continue
        why = _problem(record)
        if why:
            bad.append((i, line, why))
        else:
            records.append(record)
    return records, bad


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl``; a line that is not one (a torn line of a killed
    study, an edit) is skipped with a warning naming it (:func:`repair_results` moves it out)."""
    records, bad = _parse(path)
    for i, _, why in bad:
        warnings.warn(f"{path}:{i}: skipped, {why}", stacklevel=2)
    return records


def repair_results(path: Path) -> int:
    """Move the lines of ``results.jsonl`` that are not records (a torn line of a killed study,
    however it ends; a line of the wrong shape) to ``results.rejected.jsonl`` beside it, naming
    each; nothing is lost. Returns how many were moved."""
    records, bad = _parse(path)
    if not bad:
        return 0
    rejected = path.with_name("results.rejected.jsonl")
    with open(rejected, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for _, line, _ in bad)
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    for i, _, why in bad:
        print(f"{path}:{i}: moved to {rejected.name}: {why}", file=sys.stderr)
    return len(bad)


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(to_jsonable(record)) + "\n")
        f.flush()


def job_dir(job: Job, out: Path) -> Path:
    return run_dir(out, job.row, job.seed, job.config_hash)


def is_current(record: dict[str, Any], job: Job, out: Path) -> bool:
    """Whether ``record`` describes ``job`` of the study in ``out`` as it stands: the same key,
    and the job's run directory still holds that run (its hash file and, for a training, its
    weights). A record never outlives the run it describes."""
    if (record["row"], record["seed"], record["config_hash"]) != job.key:
        return False
    if job.kind == "annotate":
        return True
    rdir = job_dir(job, out)
    key = rdir / "study_hash.txt"
    return (key.is_file() and key.read_text().strip() == job.config_hash
            and (rdir / "model.safetensors").is_file())


def _prepare_run_dir(job: Job, out: Path) -> Path:
    """The job's run directory (one per config hash: an earlier config of the row keeps its
    own); a training row's config and hash are written into it."""
    rdir = job_dir(job, out)
    rdir.mkdir(parents=True, exist_ok=True)
    if job.kind == "annotate":
        return rdir  # for --jobs N: its log and record
    key = rdir / "study_hash.txt"
    if key.is_file() and key.read_text().strip() != job.config_hash:
        raise StudyError(f"{rdir} holds the run of config hash {key.read_text().strip()}, not "
                         f"{job.config_hash}; move it away")
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


def _run_job(job: Job, out: Path, nproc: int, progress: bool,
             world: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one job; its ``results.jsonl`` record (seconds, load average, how the machine was
    shared, metrics, run dir, the world it ran on)."""
    import torch

    t0 = time.perf_counter()
    rec = _train(job, out, nproc, progress) if job.kind == "train" else _annotate(job)
    rec["seconds"]["total"] = time.perf_counter() - t0
    rec["loadavg"] = list(os.getloadavg())
    rec["sharing"] = {"jobs": int(os.environ.get(JOBS_VAR, "1")),
                      "threads": torch.get_num_threads()}
    return {"row": job.row, "seed": job.seed, "config_hash": job.config_hash, "kind": job.kind,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "world": world, **rec}


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
