"""The multi-dataset training loop (Pfeiffer et al., GCPR 2019, Sec. 4.2).

Each step draws one dataset from the :class:`~personkit.data.samplers.DatasetSchedule`, takes
the next whole batch of that dataset, runs only the heads its labels need, sums the weighted
losses and updates. AMP (bf16, else fp16 with a gradient scaler) is used automatically on CUDA.
Every loss and the LR go to ``log.jsonl`` and TensorBoard; checkpoints go to
``RUN_DIR/checkpoints``.

Under DDP (:mod:`personkit.engine.distributed`) every rank runs the same dataset at every step
on its own shard of the batch; logged losses are means over ranks and only rank 0 writes files.
A non-finite loss (on any rank) skips the step on all ranks; ``max_nonfinite`` in a row stop
the run. A resumed run repeats the steps after its checkpoint exactly: the checkpoint holds the
model, optimizer, scheduler, loss and scaler states, the step, the batches consumed per
dataset and the torch RNG, and all data randomness comes from generators seeded by (seed,
epoch, index). See ``docs/training.md``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from personkit.checkpoint import (
    CheckpointError,
    check_training_state,
    list_checkpoints,
    load_checkpoint,
    load_latest_valid,
    save_checkpoint,
    save_weights,
)
from personkit.data.samplers import DatasetSchedule, EpochBatchSampler, InfiniteBatchSampler
from personkit.engine import distributed
from personkit.engine.logger import RunLogger
from personkit.models.weights import load_strict


class _Status:
    """Without a progress bar, a plain line every ``every_s`` seconds (step, loss, speed and
    time left), so a log or a silent terminal still shows a run is alive."""

    def __init__(self, start: int, total: int, enabled: bool, every_s: float = 30.0):
        self.start, self.total, self.enabled, self.every_s = start, total, enabled, every_s
        self.t0 = self.last = time.monotonic()

    def update(self, step: int, record: dict[str, Any]) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last = now
        per_step = (now - self.t0) / max(step - self.start, 1)
        print(f"train: step {step}/{self.total} ({100 * step / self.total:.0f} %), loss "
              f"{record.get('loss', math.nan):.3f}, {per_step:.2f} s/step, about "
              f"{per_step * (self.total - step) / 60:.1f} min left", flush=True)


class TrainingError(RuntimeError):
    """A run that cannot go on (repeated non-finite losses, non-finite weights, out of memory);
    says what to change."""


class ResumeError(ValueError):
    """A resume whose config changes settings a resumed run cannot change; lists them."""


#: Settings a resumed run may change: they are applied (the LR to the optimizer and the
#: scheduler, the run length to the schedule) and recorded in ``log.jsonl``. Any other change
#: against the checkpoint's config is refused.
RESUMABLE = ("train.lr", "train.iterations", "train.epochs", "train.log_every",
             "train.checkpoint_every", "train.keep_checkpoints", "train.eval_every",
             "train.max_nonfinite_steps", "train.grad_clip", "train.amp", "train.device",
             "data.num_workers", "train.channels_last")


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
    hooks: called as ``hook(trainer, logger)`` after every step, on every rank (e.g.
        :class:`~personkit.engine.periodic_eval.PeriodicEvaluation`).
    run_id: this run's identity, stored in its checkpoints (a new random id if None).
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any, sources: Mapping[str, TrainSource], schedule: DatasetSchedule,
                 total_steps: int, run_dir: str | Path, *, device: str | torch.device = "cpu",
                 amp: str = "auto", grad_clip: float | None = None, log_every: int = 10,
                 checkpoint_every: int = 1000, keep_checkpoints: int = 3,
                 extra_state: Mapping[str, Any] | None = None, is_main: bool = True,
                 progress: bool = True, max_nonfinite: int = 10, run_id: str | None = None,
                 hooks: Sequence[Callable[[Trainer, RunLogger], None]] = ()):
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
        self.hooks = tuple(hooks)
        self.run_id = run_id or uuid.uuid4().hex  # a resumed run takes its checkpoint's
        self.step = 0
        self.consumed = {name: 0 for name in self.sources}
        self.skipped_steps = 0
        self._nonfinite_streak = 0
        self._iterators: dict[str, Any] = {}
        self._logger: RunLogger | None = None
        self.resume_changes: dict[str, list[Any]] = {}  # applied on the last resume

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        model = getattr(self.model, "module", self.model)
        return {
            "model": model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "consumed": dict(self.consumed),
            "skipped_steps": self.skipped_steps, "torch_rng": torch.get_rng_state(),
            "run_id": self.run_id, **self.extra_state,
        }

    def load_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Restore a :meth:`state_dict`; model keys must match exactly (else a
        :class:`~personkit.models.WeightsError` lists the mismatched keys); a state missing a
        part is a :class:`~personkit.checkpoint.CheckpointError` naming ``source``."""
        check_training_state(state, source)
        changes = self._config_changes(state.get("config"), source)
        load_strict(getattr(self.model, "module", self.model), state["model"], source=source)
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.consumed = {name: int(state["consumed"].get(name, 0)) for name in self.sources}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        torch.set_rng_state(state["torch_rng"])
        if isinstance(state.get("run_id"), str):
            self.run_id = state["run_id"]
        self._iterators.clear()
        if {"train.lr", "train.iterations", "train.epochs"} & set(changes):
            self._reset_lr(self.extra_state["config"]["train"]["lr"])
        self.resume_changes = changes

    def _config_changes(self, old: Any, source: str) -> dict[str, list[Any]]:
        """The settings changed against the checkpoint's config; a :class:`ResumeError` if any
        is not in ``RESUMABLE``."""
        from personkit.config import config_diff

        new = self.extra_state.get("config")
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return {}
        changes = config_diff(dict(old), dict(new))
        refused = [f"{k}: {a!r} -> {b!r}" for k, a, b in changes if k not in RESUMABLE]
        if refused:
            raise ResumeError(
                f"cannot resume from {source}: the config changes settings a resumed run "
                f"cannot change ({'; '.join(refused)}). Resume with the checkpoint's values, or "
                f"start a new run (another --out, or --overwrite). A resume may change only "
                f"{', '.join(RESUMABLE)}")
        return {k: [a, b] for k, a, b in changes}

    def _reset_lr(self, lr: float) -> None:
        """Use base LR ``lr`` from the current step on: the optimizer's groups and the
        scheduler's ``base_lrs`` (a :class:`LambdaLR` is re-evaluated at its step, so a new
        run length takes effect too; other schedulers are scaled)."""
        sched, groups = self.scheduler, self.optimizer.param_groups
        old = list(getattr(sched, "base_lrs", [g.get("initial_lr", g["lr"]) for g in groups]))
        lambdas = getattr(sched, "lr_lambdas", None)
        for i, group in enumerate(groups):
            group["initial_lr"] = lr
            if lambdas is not None:
                group["lr"] = lr * lambdas[i](sched.last_epoch)
            else:
                group["lr"] = group["lr"] * lr / old[i]
        if hasattr(sched, "base_lrs"):
            sched.base_lrs = [lr] * len(groups)
            sched._last_lr = [g["lr"] for g in groups]

    def resume_latest(self) -> Path | None:
        """Continue from the newest valid checkpoint in the run directory, if any.

        Unusable files (truncated, corrupt, failing their hash, missing a part) are skipped
        with a warning; if there are checkpoints but none is usable, a
        :class:`~personkit.checkpoint.CheckpointError` says so. Under DDP rank 0 picks
        the file and every rank loads that one.
        """
        folder = self.run_dir / "checkpoints"
        found = load_latest_valid(folder, check_training_state) if self.is_main else None
        path = distributed.broadcast_object(None if found is None else str(found[0]))
        if path is None:
            files = list_checkpoints(folder) if self.is_main else []
            if files:
                raise CheckpointError(
                    f"none of the {len(files)} checkpoints in {folder} is usable (see the "
                    f"warnings above); move them aside to start again, or resume from a copy")
            return None
        state = found[1] if found is not None else load_checkpoint(path)
        self.load_state_dict(state, source=path)
        return Path(path)

    def nonfinite_state(self, optimizer: bool = True) -> list[str]:
        """Names of model tensors (and optimizer state entries) holding NaN or infinity."""
        model = getattr(self.model, "module", self.model)
        bad = [f"model.{k}" for k, v in model.state_dict().items()
               if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if optimizer:
            names = {p: n for n, p in [*model.named_parameters(),
                                        *self.criterion.named_parameters(prefix="criterion")]}
            for param, entry in self.optimizer.state.items():
                bad += [f"optimizer.{names.get(param, '?')}.{k}" for k, v in entry.items()
                        if torch.is_tensor(v) and v.is_floating_point()
                        and not bool(torch.isfinite(v).all())]
        return bad

    def _refuse_nonfinite(self, what: str, optimizer: bool = True) -> None:
        bad = self.nonfinite_state(optimizer)
        if bad:
            kept = list_checkpoints(self.run_dir / "checkpoints")
            last = f"the last one written is {kept[-1]}" if kept else "none was written before"
            raise TrainingError(
                f"step {self.step}: non-finite values in {len(bad)} tensors ({', '.join(bad[:4])}"
                f"{', ...' if len(bad) > 4 else ''}); not writing {what} ({last}). Lower "
                f"train.lr, set train.grad_clip or train.amp=off, then resume with --resume auto")

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only; the log is flushed first).
        A :class:`TrainingError` instead if weights or optimizer state are not finite."""
        if not self.is_main:
            return None
        self._refuse_nonfinite("a checkpoint")
        if self._logger is not None:
            self._logger.flush()
        return save_checkpoint(self.state_dict(), self.run_dir / "checkpoints", self.step,
                               self.keep_checkpoints, run_id=self.run_id)

    def export_weights(self) -> Path | None:
        """Write ``RUN_DIR/model.safetensors`` (inference weights, config and metadata)."""
        if not self.is_main:
            return None
        self._refuse_nonfinite("model.safetensors", optimizer=False)
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
        """One optimisation step on a batch of dataset ``name``; None if it was skipped.

        The returned losses are means over DDP ranks. A CUDA out-of-memory error becomes a
        :class:`TrainingError` that names the dataset and its batch.
        """
        try:
            return self._step(name, batch)
        except torch.OutOfMemoryError as e:
            raise TrainingError(self._oom_message(name, batch)) from e

    def _step(self, name: str, batch: Mapping[str, torch.Tensor]) -> dict[str, float] | None:
        tasks = self.sources[name].tasks
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else contextlib.nullcontext())
        with autocast:
            out = self.model(batch["image"], heads=tasks)
        losses = self.criterion(out, batch, tasks, self.step)
        means = distributed.mean_over_ranks(torch.stack([v.detach().float()
                                                         for v in losses.values()]))
        values = dict(zip(losses, means.tolist(), strict=True))
        if not math.isfinite(values["loss"]):  # the same decision on every rank
            self._skip_nonfinite(name, values)
            return None
        self._nonfinite_streak = 0
        self.scaler.scale(losses["loss"]).backward()
        distributed.average_gradients(self.criterion.parameters())  # DDP covers the model
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return values

    def _skip_nonfinite(self, name: str, values: Mapping[str, float]) -> None:
        self.skipped_steps += 1
        self._nonfinite_streak += 1
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if self._nonfinite_streak >= self.max_nonfinite:
            raise TrainingError(
                f"{self._nonfinite_streak} non-finite losses in a row (the last at step "
                f"{self.step + 1} on dataset {name!r}: {bad}); stopping. Lower the learning "
                f"rate (train.lr), set train.grad_clip, switch AMP off (train.amp=off) or check "
                f"the dataset's images and labels; then resume from the last checkpoint.")
        if self.is_main:
            tqdm.write(f"step {self.step + 1}: non-finite {bad} on dataset {name!r}; step "
                       f"skipped ({self._nonfinite_streak} in a row, {self.skipped_steps} in "
                       f"all, limit {self.max_nonfinite})", file=sys.stderr)

    def _oom_message(self, name: str, batch: Mapping[str, torch.Tensor]) -> str:
        size = "x".join(str(n) for n in batch["image"].shape[-2:])
        amp = f"AMP {self.amp_dtype}" if self.amp_dtype is not None else "AMP off"
        return (
            f"out of memory on {self.device} in a training step of dataset {name!r} "
            f"({len(batch['image'])} images of {size} per process, {amp}). Lower that "
            f"dataset's batch size (its data.train entry: batch_size, or pk_p/pk_k for a PK "
            f"sampler), enable mixed precision (train.amp=auto, bf16 or fp16), or use a "
            f"smaller input_size or backbone.")

    def train(self) -> list[dict[str, Any]]:
        """Run until ``total_steps``; returns one record per step (as written to the log)."""
        logger = RunLogger(self.run_dir, enabled=self.is_main, start_step=self.step)
        self._logger = logger
        if self.resume_changes:  # what this resume applied, once
            logger.event(self.step, "resume", config_changes=self.resume_changes)
            self.resume_changes = {}
        history: list[dict[str, Any]] = []
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.is_main), dynamic_ncols=True)
        status = _Status(self.step, self.total_steps, enabled=self.is_main and not self.progress)
        try:
            while self.step < self.total_steps:
                record = self._train_one(logger)
                history.append(record)
                bar.update(1)
                status.update(self.step, record)
                if self.step % self.log_every == 0:
                    bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}",
                                    data=record["dataset"])
                    logger.flush()
                for hook in self.hooks:
                    hook(self, logger)
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save()
            self.save()
            self.export_weights()
        finally:
            bar.close()
            logger.close()
            self._logger = None
        return history

    def _train_one(self, logger: RunLogger) -> dict[str, Any]:
        name = self.schedule.dataset_at(self.step)
        start = time.perf_counter()
        batch = self._next_batch(name)
        values = self.run_step(name, batch)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.step += 1
        fields: dict[str, Any] = {"dataset": name}
        if "bad_skipped" in batch and (bad := int(batch["bad_skipped"].sum())):
            fields["bad_images"] = bad  # undecodable images replaced (on_bad_image: skip)
        if values is None:  # a skipped step: no loss values, just the count
            record_values = {"skipped_steps": float(self.skipped_steps), "lr": lr}
            fields["skipped"] = True
        else:
            record_values = {**values, "lr": lr}
        logger.log(self.step, record_values, **fields,
                   seconds=round(time.perf_counter() - start, 4))
        return {"step": self.step, **fields, **record_values}
