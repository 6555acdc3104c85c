"""The one place where a :class:`~personkit.config.Config` becomes a training run: model,
losses, optimizer, schedule, samplers, hooks and the :class:`Trainer`.

Every class in personkit takes explicit arguments; these functions read the config sections
and pass them on. Names are looked up in plain dicts, and an unknown name is an error listing
the valid ones. Datasets and samplers come from :mod:`personkit.engine.datasets`, the model from
:func:`personkit.models.build.build_model`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from personkit.config import Config, config_to_dict
from personkit.data.samplers import DatasetSchedule
from personkit.engine import distributed
from personkit.engine.datasets import build_sources, size_id_classifier
from personkit.engine.evaluate import check_eval_settings, run_evaluation
from personkit.engine.lr import build_lr_scheduler
from personkit.engine.periodic_eval import PeriodicEvaluation
from personkit.engine.trainer import Trainer
from personkit.losses import MultiTaskLoss
from personkit.losses.classification import attribute_class_weights
from personkit.models import MultiTaskModel
from personkit.models.build import build_model
from personkit.models.init_from import init_from
from personkit.runtime import resolve_device


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """Run length in iterations from ``train.epochs`` or ``train.iterations``."""
    if cfg.train.epochs is not None:
        return max(1, math.ceil(cfg.train.epochs * steps_per_epoch))
    if cfg.train.iterations is not None:
        return cfg.train.iterations
    raise ValueError("set train.epochs or train.iterations")


def validate_training(cfg: Config, world_size: int = 1) -> None:
    """Everything :func:`build_trainer` checks before building the model, for ``world_size``
    processes (``personkit train --nproc N`` runs it before it launches them)."""
    build_sources(cfg, 0, world_size)
    check_eval_settings(cfg)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and world_size > torch.cuda.device_count():
        raise ValueError(f"{world_size} processes need {world_size} GPUs, but "
                         f"{torch.cuda.device_count()} are visible (one process per GPU)")
    _check_sync_bn(cfg, device, world_size)


def _check_sync_bn(cfg: Config, device: torch.device, world_size: int) -> None:
    if cfg.train.sync_bn and world_size > 1 and device.type == "cpu":
        raise ValueError("train.sync_bn needs GPUs: SyncBatchNorm does not run on CPU "
                         "(set train.sync_bn=false)")


def _set_determinism(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def attribute_weights(cfg: Config, sources: dict[str, Any]) -> dict[str, list[float]] | None:
    """The attribute loss's class weights (``loss.attribute_balance``) from the labels of
    every training dataset with the ``attributes`` task (its records, as sampled)."""
    if cfg.loss.attribute_balance == "none" or "attributes" not in cfg.model.heads:
        return None
    labels = [r.attributes for s in sources.values() if "attributes" in s.tasks
              for r in s.dataset.records if r.attributes is not None]
    if not labels:
        raise ValueError(f"loss.attribute_balance={cfg.loss.attribute_balance} needs a training "
                         f"dataset with the 'attributes' task and labels")
    return attribute_class_weights(np.stack(labels), cfg.model.attributes,
                                   cfg.loss.attribute_balance)


def build_optimizer(params: Sequence[torch.nn.Parameter], name: str, *, lr: float,
                    momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam (the paper, Sec. 4.2) or SGD with momentum, whose update is linear in the
    gradient (Adam's is about ``lr`` per weight whatever the gradient's size).

    Adam runs fused (one kernel for all tensors; 2x faster than ``foreach`` on a 2-core CPU,
    benchmarks/bench_train_step.py) when every parameter lives on the CPU or a CUDA device.
    """
    if name == "adam":
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                    for p in params)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd")


def build_trainer(cfg: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                  progress: bool = True) -> Trainer:
    """Model, losses, optimizer, schedule, samplers and the training loop for ``cfg``.

    Under ``torchrun`` (a process group is initialised) the model is wrapped in
    DistributedDataParallel, on ``cuda:LOCAL_RANK`` for CUDA; ``rank``/``world_size`` shard
    the batches.
    """
    seed = cfg.train.seed
    sources = build_sources(cfg, rank, world_size)
    cfg = size_id_classifier(cfg, sources)
    check_eval_settings(cfg)
    _set_determinism(cfg.train.deterministic)
    torch.manual_seed(seed)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and distributed.is_initialized():
        device = torch.device("cuda", distributed.get_local_rank())
    _check_sync_bn(cfg, device, world_size)
    model = build_model(cfg.model)
    if cfg.model.init_from:
        _init_from(model, cfg, run_dir, rank == 0)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = MultiTaskLoss(
        tuple(cfg.model.attributes), weights=cfg.loss.weights, uncertainty=cfg.loss.uncertainty,
        triplet_margin=cfg.loss.triplet_margin, pose_kind=cfg.loss.pose,
        pose_reduction=cfg.loss.pose_reduction, seg_top_k=cfg.loss.seg_top_k,
        seg_warmup_steps=cfg.loss.seg_warmup_steps, pose_heatmap=cfg.loss.pose_heatmap,
        pose_heatmap_sigma=cfg.loss.pose_heatmap_sigma,
        attribute_weights=attribute_weights(cfg, sources),
    ).to(device)
    meta = model.meta.to_dict()
    model = distributed.wrap_model(distributed.convert_sync_bn(model, cfg.train.sync_bn), device)
    schedule = DatasetSchedule({n: len(s.sampler) for n, s in sources.items()},
                               cfg.data.interleave, {d.name: d.weight for d in cfg.data.train},
                               seed)
    steps = total_steps(cfg, schedule.steps_per_epoch)
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = build_optimizer([p for p in params if p.requires_grad], cfg.train.optimizer,
                                lr=cfg.train.lr, momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay)
    s = cfg.train.schedule
    scheduler = build_lr_scheduler(optimizer, steps, s.type, decay_start=s.decay_start,
                                   decay_end=s.decay_end, final_factor=s.final_factor,
                                   milestones=s.milestones, gamma=s.gamma)
    return Trainer(
        model, criterion, optimizer, scheduler, sources, schedule, steps, run_dir, device=device,
        amp=cfg.train.amp, grad_clip=cfg.train.grad_clip, log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every, keep_checkpoints=cfg.train.keep_checkpoints,
        extra_state={"config": config_to_dict(cfg), "meta": meta},
        is_main=rank == 0, progress=progress, max_nonfinite=cfg.train.max_nonfinite_steps,
        hooks=_training_hooks(cfg, run_dir, device, rank),
    )


def _init_from(model: MultiTaskModel, cfg: Config, run_dir: str | Path, is_main: bool) -> None:
    """``model.init_from``: load the selected parts of an earlier run; rank 0 prints the
    report and writes it to ``RUN_DIR/init_report.json``."""
    report = init_from(model, cfg.model.init_from, cfg.model.init_include,
                       cfg.model.init_exclude)
    if is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        report.write(Path(run_dir) / "init_report.json")
        print(report.summary(), flush=True)


def _training_hooks(cfg: Config, run_dir: str | Path, device: torch.device,
                    rank: int) -> list[Any]:
    """The periodic evaluation of ``train.eval_every`` (none when it is 0)."""
    if not cfg.train.eval_every:
        return []
    def evaluate(model: MultiTaskModel) -> dict[str, dict[str, Any]]:
        return run_evaluation(model, cfg, device=device, progress=False)

    return [PeriodicEvaluation(evaluate, cfg.train.eval_every, run_dir, cfg.train.best_metric,
                               is_main=rank == 0)]
