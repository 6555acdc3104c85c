"""Starting a training run in a run directory, the same way for ``personkit train``, the demo
and every study row.

:func:`train_run` checks the device and ``--out``, claims the folder (another run's checkpoints
are refused, or moved aside with ``overwrite``; see :mod:`personkit.engine.rundir`), builds the
trainer, resumes (``resume="auto"``: the newest valid checkpoint; or a checkpoint path), writes
``config.yaml`` and ``run.json`` (the run's identity) and trains. With ``nproc > 1`` it
validates the config for that many processes, writes ``config.yaml`` and relaunches
``personkit train`` on it under ``torchrun`` (``python -m torch.distributed.run``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personkit.checkpoint import load_checkpoint
from personkit.config import Config, save_config
from personkit.engine import distributed
from personkit.engine.build import build_trainer, validate_training
from personkit.engine.rundir import check_out_dir, claim_run_dir, write_run_file
from personkit.engine.trainer import Trainer
from personkit.runtime import resolve_device


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
    """Train ``cfg`` into the run directory ``out`` (see the module docstring)."""
    out = Path(out)
    device = resolve_device(cfg.train.device, "train.device")
    launcher = nproc > 1 and not distributed.launched_by_torchrun()
    if launcher or int(os.environ.get("RANK", "0")) == 0:
        check_out_dir(out)  # before anything is built or written
        resume = claim_run_dir(out, resume, overwrite)
    if launcher:
        validate_training(cfg, nproc)  # config errors stop here, before any launch
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        argv = ["train", str(out / "config.yaml"), "--out", str(out)]
        argv += (["--resume", resume] if resume else []) + ([] if progress else ["--no-progress"])
        return RunResult(None, exit_code=distributed.launch(nproc, argv))
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
    distributed.destroy()  # only after success: a failed rank exits and torchrun stops the rest
    return RunResult(trainer, history, resumed)


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
