"""Starting a training run in a run directory, the same way for ``personkit train``, the demo
and every study row.

:func:`train_run` checks the device and ``--out``, claims the folder (another run's checkpoints
are refused, or moved aside with ``overwrite``; see :mod:`personkit.engine.rundir`), builds the
trainer, resumes (``resume="auto"``: the newest valid checkpoint; or a checkpoint path), writes
``config.yaml`` and ``run.json`` (the run's identity) and trains. With ``nproc > 1`` it
validates the config for that many processes, writes ``config.yaml`` and relaunches
``personkit train`` on it under ``torchrun`` (``python -m torch.distributed.run``). The process
that writes the run directory holds its lock (``out/.lock``) throughout, and draws the
learning curves into ``curves.png`` at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personkit.checkpoint import load_checkpoint
from personkit.config import Config, save_config
from personkit.engine import distributed
from personkit.engine.build import build_trainer, validate_training
from personkit.engine.rundir import check_out_dir, claim_run_dir, write_run_file
from personkit.engine.trainer import Trainer
from personkit.report import plot_learning_curves
from personkit.runtime import exclusive, resolve_device

#: Set by an ``nproc`` launcher for its ranks: the run directory whose lock it holds.
LOCK_VAR = "PERSONKIT_RUN_LOCKED"


@dataclass
class RunResult:
    """What :func:`train_run` did: the trainer and its log records (``None`` and ``[]`` when
    ``nproc`` processes trained under torchrun), the checkpoint it resumed from and the
    launcher's exit code."""

    trainer: Trainer | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: Path | None = None
    exit_code: int = 0


def train_run(cfg: Config, out: str | Path, *, resume: str | None = None,
              overwrite: bool = False, nproc: int = 1, progress: bool = True) -> RunResult:
    """Train ``cfg`` into the run directory ``out`` (see the module docstring). One trainer
    per run directory: the process that writes it (rank 0, or the ``nproc`` launcher) holds
    ``out/.lock`` while it trains, and another trainer there is refused naming its PID."""
    out = Path(out)
    device = resolve_device(cfg.train.device, "train.device")
    launcher = nproc > 1 and not distributed.launched_by_torchrun()
    writer = launcher or int(os.environ.get("RANK", "0")) == 0
    if writer:
        check_out_dir(out)  # before anything is built or written
    locked = os.environ.get(LOCK_VAR) == str(out.resolve())  # held by our launcher
    with _run_lock(out) if writer and not locked else contextlib.nullcontext():
        if writer:
            resume = claim_run_dir(out, resume, overwrite)
        if launcher:
            return _launch(cfg, out, resume, nproc, progress)
        distributed.init_from_env(device)  # under torchrun
        rank = distributed.get_rank()
        trainer = build_trainer(cfg, out, rank, distributed.get_world_size(), progress=progress)
        resumed = _resume(trainer, resume)
        if rank == 0:  # the run is set up: record its config and identity
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
            write_run_file(out, trainer.run_id, resumed_from=resumed and str(resumed),
                           start_step=trainer.step)
        history = trainer.train()
        distributed.destroy()  # only after success: a failed rank exits, torchrun stops the rest
        if rank == 0:
            plot_learning_curves(out / "log.jsonl", out / "curves.png")
        return RunResult(trainer, history, resumed)


def _launch(cfg: Config, out: Path, resume: str | None, nproc: int,
            progress: bool) -> RunResult:
    """``personkit train`` on ``out/config.yaml`` in ``nproc`` processes under torchrun."""
    validate_training(cfg, nproc)  # config errors stop here, before any launch
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    argv = ["train", str(out / "config.yaml"), "--out", str(out)]
    argv += (["--resume", resume] if resume else []) + ([] if progress else ["--no-progress"])
    os.environ[LOCK_VAR] = str(out.resolve())  # the ranks train under this process's lock
    try:
        return RunResult(None, exit_code=distributed.launch(nproc, argv))
    finally:
        del os.environ[LOCK_VAR]


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """:func:`personkit.runtime.exclusive` on ``out/.lock``; a folder this call created is
    removed again if nothing but the lock was written (a config error leaves no trace)."""
    created = not out.exists()
    try:
        with exclusive(out / ".lock", f"run directory {out}"):
            yield
    except BaseException:
        if created and out.is_dir() and [p.name for p in out.iterdir()] == [".lock"]:
            (out / ".lock").unlink()
            out.rmdir()
        raise


def _resume(trainer: Trainer, resume: str | None) -> Path | None:
    """``auto`` (the newest valid checkpoint, if any) or a checkpoint path; returns the
    checkpoint resumed from. :func:`claim_run_dir` has already refused other runs' folders."""
    if not resume:
        return None
    if resume == "auto":
        path = trainer.resume_latest()
    else:
        trainer.load_state_dict(load_checkpoint(resume), source=resume)
        path = Path(resume)
    if path and trainer.is_main:
        print(f"resumed from {path} at step {trainer.step}")
    return path
