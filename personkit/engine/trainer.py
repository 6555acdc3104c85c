"""The multi-dataset training loop (Pfeiffer et al., GCPR 2019, Sec. 4.2).

Each step draws one dataset from the :class:`~personkit.data.samplers.DatasetSchedule`, takes
the next whole batch of that dataset, runs only the heads its labels need, sums the weighted
losses and updates. AMP (bf16, else fp16 with a gradient scaler) is used automatically on CUDA.
Every loss and the LR go to ``log.jsonl`` and TensorBoard; checkpoints go to
``RUN_DIR/checkpoints``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from personkit.data.samplers import DatasetSchedule, EpochBatchSampler, InfiniteBatchSampler
from personkit.engine.checkpoint import load_latest_valid, save_checkpoint, save_weights
from personkit.engine.logger import RunLogger


@dataclass
class TrainSource:
    """One training dataset, its batch sampler and the tasks it has labels for."""

    dataset: Dataset
    sampler: EpochBatchSampler
    tasks: tuple[str, ...]
    num_workers: int = 0


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto/off/bf16/fp16) on ``device``; None = full precision."""
    if amp not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"unknown amp setting {amp!r}; valid: auto, off, bf16, fp16")
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


class Trainer:
    """Args:
    model: the :class:`~personkit.models.MultiTaskModel` (or its DDP wrapper).
    criterion: a :class:`~personkit.losses.MultiTaskLoss`.
    optimizer, scheduler: stepped once per iteration.
    sources: dataset name -> :class:`TrainSource`.
    schedule: which dataset each step uses.
    total_steps: run length in iterations.
    run_dir: where logs and checkpoints go.
    extra_state: stored in every checkpoint (the config, the model metadata).
    max_nonfinite: consecutive non-finite losses after which the run stops.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any, sources: Mapping[str, TrainSource], schedule: DatasetSchedule,
                 total_steps: int, run_dir: str | Path, *, device: str | torch.device = "cpu",
                 amp: str = "auto", grad_clip: float | None = None, log_every: int = 10,
                 checkpoint_every: int = 1000, keep_checkpoints: int = 3,
                 extra_state: Mapping[str, Any] | None = None, is_main: bool = True,
                 progress: bool = True, max_nonfinite: int = 10):
        self.model, self.criterion = model, criterion
        self.optimizer, self.scheduler = optimizer, scheduler
        self.sources, self.schedule = dict(sources), schedule
        self.total_steps, self.run_dir = total_steps, Path(run_dir)
        self.device = torch.device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.grad_clip, self.log_every = grad_clip, log_every
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.extra_state = dict(extra_state or {})
        self.is_main, self.progress = is_main, progress
        self.max_nonfinite = max_nonfinite
        self.step = 0
        self.consumed = {name: 0 for name in self.sources}
        self.skipped_steps = 0
        self._nonfinite_streak = 0
        self._iterators: dict[str, Any] = {}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        model = getattr(self.model, "module", self.model)
        return {
            "model": model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "consumed": dict(self.consumed),
            "skipped_steps": self.skipped_steps, "torch_rng": torch.get_rng_state(),
            **self.extra_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        getattr(self.model, "module", self.model).load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.consumed = {name: int(state["consumed"].get(name, 0)) for name in self.sources}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        torch.set_rng_state(state["torch_rng"])
        self._iterators.clear()

    def resume_latest(self) -> Path | None:
        """Continue from the newest valid checkpoint in the run directory, if any."""
        found = load_latest_valid(self.run_dir / "checkpoints")
        if found is None:
            return None
        self.load_state_dict(found[1])
        return found[0]

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.run_dir / "checkpoints", self.step,
                               self.keep_checkpoints)

    def export_weights(self) -> Path | None:
        """Write ``RUN_DIR/model.safetensors`` (inference weights, config and metadata)."""
        if not self.is_main:
            return None
        model = getattr(self.model, "module", self.model)
        return save_weights(model, self.run_dir / "model.safetensors",
                            self.extra_state.get("config", {}), self.extra_state.get("meta", {}))

    # ------------------------------------------------------------------ loop

    def _next_batch(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._iterators:
            src = self.sources[name]
            loader = DataLoader(
                src.dataset, batch_sampler=InfiniteBatchSampler(src.sampler, self.consumed[name],
                                                   with_epoch=True),
                num_workers=src.num_workers, persistent_workers=src.num_workers > 0,
                pin_memory=self.device.type == "cuda",
            )
            self._iterators[name] = iter(loader)
        batch = next(self._iterators[name])
        self.consumed[name] += 1
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()}

    def run_step(self, name: str, batch: Mapping[str, torch.Tensor]) -> dict[str, float] | None:
        """One optimisation step on a batch of dataset ``name``; None if it was skipped."""
        tasks = self.sources[name].tasks
        self.model.train()
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else contextlib.nullcontext())
        with autocast:
            out = self.model(batch["image"], heads=tasks)
        losses = self.criterion(out, batch, tasks, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(losses["loss"]):
            self._skip_nonfinite(name, losses)
            return None
        self._nonfinite_streak = 0
        self.scaler.scale(losses["loss"]).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: float(v.detach()) for k, v in losses.items()}

    def _skip_nonfinite(self, name: str, losses: Mapping[str, torch.Tensor]) -> None:
        self.skipped_steps += 1
        self._nonfinite_streak += 1
        bad = {k: float(v.detach()) for k, v in losses.items()}
        if self._nonfinite_streak >= self.max_nonfinite:
            raise RuntimeError(
                f"{self._nonfinite_streak} consecutive non-finite losses (last on dataset "
                f"{name!r}: {bad}); stopping. Lower the learning rate, check the labels, or "
                f"switch AMP off (train.amp=off)."
            )

    def train(self) -> list[dict[str, Any]]:
        """Run until ``total_steps``; returns one record per step (as written to the log)."""
        logger = RunLogger(self.run_dir, enabled=self.is_main)
        history: list[dict[str, Any]] = []
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                record = self._train_one(logger)
                history.append(record)
                bar.update(1)
                if self.step % self.log_every == 0:
                    bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}",
                                    data=record["dataset"])
                    logger.flush()
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save()
            self.save()
            self.export_weights()
        finally:
            bar.close()
            logger.close()
        return history

    def _train_one(self, logger: RunLogger) -> dict[str, Any]:
        name = self.schedule.dataset_at(self.step)
        start = time.perf_counter()
        batch = self._next_batch(name)
        values = self.run_step(name, batch)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.step += 1
        if values is None:
            record_values = {"skipped_steps": float(self.skipped_steps), "lr": lr}
        else:
            record_values = {**values, "lr": lr}
        logger.log(self.step, record_values, dataset=name,
                   seconds=round(time.perf_counter() - start, 4))
        return {"step": self.step, "dataset": name, **record_values}
