"""The one place where a :class:`~personkit.config.Config` becomes objects.

Every class in personkit takes explicit arguments; these functions read the config sections
and pass them on. Names are looked up in plain dicts, and an unknown name is an error listing
the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from personkit.config import Config, DatasetConfig, ModelConfig, config_to_dict
from personkit.data.constants import LIP_CLASSES, MARKET_ATTRIBUTES, MERGED5_CLASSES, MPII_JOINTS
from personkit.data.fake import FakePersonDataset
from personkit.data.samplers import DatasetSchedule, PKBatchSampler, RandomBatchSampler
from personkit.engine.lr import build_lr_scheduler
from personkit.engine.trainer import Trainer, TrainSource
from personkit.losses import MultiTaskLoss
from personkit.models import ModelMeta, MultiTaskModel, ResNetBackbone


def _names(known: tuple[str, ...], n: int) -> tuple[str, ...]:
    """``known`` names if there are ``n`` of them, else "0".."n-1"."""
    return known if len(known) == n else tuple(str(i) for i in range(n))


def build_model(cfg: ModelConfig) -> MultiTaskModel:
    """The multi-task model described by the ``model`` section."""
    backbone = ResNetBackbone(cfg.backbone.name, cfg.backbone.norm, cfg.backbone.pretrained)
    parts = MERGED5_CLASSES if cfg.seg_classes == 5 else _names(LIP_CLASSES, cfg.seg_classes)
    meta = ModelMeta(
        input_size=cfg.input_size, mean=cfg.mean, std=cfg.std, heads=cfg.heads,
        joint_names=_names(MPII_JOINTS, cfg.num_joints), part_classes=parts,
        attributes={a: _names(MARKET_ATTRIBUTES.get(a, ()), n) for a, n in cfg.attributes.items()},
        num_ids=cfg.num_ids, backbone=cfg.backbone.name, norm=cfg.backbone.norm,
    )
    return MultiTaskModel(
        backbone, cfg.heads, sharing=cfg.sharing, num_ids=cfg.num_ids, attributes=cfg.attributes,
        num_joints=cfg.num_joints, seg_classes=cfg.seg_classes, fpn_channels=cfg.fpn_channels,
        seg_channels=cfg.seg_channels, meta=meta,
    )


def _fake_dataset(d: DatasetConfig, cfg: Config, seed: int) -> Dataset:
    return FakePersonDataset(
        input_size=d.input_size, seg_classes=cfg.model.seg_classes,
        attribute_names=tuple(cfg.model.attributes), mean=cfg.model.mean, std=cfg.model.std,
        seed=seed, **d.options,
    )


DATASET_BUILDERS: dict[str, Callable[[DatasetConfig, Config, int], Dataset]] = {
    "fake": _fake_dataset,
}


def build_dataset(d: DatasetConfig, cfg: Config, seed: int = 0) -> Dataset:
    """The torch dataset for one ``data.train``/``data.eval`` entry."""
    if d.type not in DATASET_BUILDERS:
        raise ValueError(
            f"dataset {d.name!r}: unknown type {d.type!r}; valid: {sorted(DATASET_BUILDERS)}")
    return DATASET_BUILDERS[d.type](d, cfg, seed)


def build_sampler(d: DatasetConfig, dataset: Dataset, seed: int, rank: int = 0,
                  world_size: int = 1) -> PKBatchSampler | RandomBatchSampler:
    """The batch sampler of one training dataset (PK for triplet batches, else random)."""
    try:
        if d.sampler == "pk":
            pids = getattr(dataset, "pids", None)
            if pids is None:
                raise ValueError("the PK sampler needs a dataset with identities (pids)")
            return PKBatchSampler(pids, d.pk_p, d.pk_k, seed, rank, world_size)
        return RandomBatchSampler(len(dataset), d.batch_size, seed, rank, world_size)
    except ValueError as e:
        raise ValueError(f"dataset {d.name!r}: {e}") from e


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """Run length in iterations from ``train.epochs`` or ``train.iterations``."""
    if cfg.train.epochs is not None:
        return max(1, math.ceil(cfg.train.epochs * steps_per_epoch))
    if cfg.train.iterations is not None:
        return cfg.train.iterations
    raise ValueError("set train.epochs or train.iterations")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_trainer(cfg: Config, run_dir: str | Path, rank: int = 0, world_size: int = 1,
                  progress: bool = True) -> Trainer:
    """Model, losses, optimizer, schedule, samplers and the training loop for ``cfg``."""
    if not cfg.data.train:
        raise ValueError("the config has no training datasets (data.train is empty)")
    seed = cfg.train.seed
    torch.manual_seed(seed)
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model).to(device)
    criterion = MultiTaskLoss(
        tuple(cfg.model.attributes), cfg.loss.weights, cfg.loss.uncertainty,
        cfg.loss.triplet_margin, cfg.loss.pose, cfg.loss.seg_top_k, cfg.loss.seg_warmup_steps,
    ).to(device)
    sources = {}
    for i, d in enumerate(cfg.data.train):
        dataset = build_dataset(d, cfg, seed=seed + i)
        sampler = build_sampler(d, dataset, seed + i, rank, world_size)
        sources[d.name] = TrainSource(dataset, sampler, d.tasks, cfg.data.num_workers)
    schedule = DatasetSchedule({n: len(s.sampler) for n, s in sources.items()},
                               cfg.data.interleave, {d.name: d.weight for d in cfg.data.train},
                               seed)
    steps = total_steps(cfg, schedule.steps_per_epoch)
    params = list(model.parameters()) + list(criterion.parameters())
    optimizer = torch.optim.Adam([p for p in params if p.requires_grad], lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay)
    s = cfg.train.schedule
    scheduler = build_lr_scheduler(optimizer, steps, s.type, decay_start=s.decay_start,
                                   decay_end=s.decay_end, final_factor=s.final_factor,
                                   milestones=s.milestones, gamma=s.gamma)
    return Trainer(
        model, criterion, optimizer, scheduler, sources, schedule, steps, run_dir, device=device,
        amp=cfg.train.amp, grad_clip=cfg.train.grad_clip, log_every=cfg.train.log_every,
        checkpoint_every=cfg.train.checkpoint_every, keep_checkpoints=cfg.train.keep_checkpoints,
        extra_state={"config": config_to_dict(cfg), "meta": model.meta.to_dict()},
        is_main=rank == 0, progress=progress,
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> MultiTaskModel:
    """Rebuild a trained model from a run directory, a ``.pt`` checkpoint or a ``.safetensors``
    export, loading its weights strictly.

    A run directory resolves to its ``model.safetensors`` if present, else its newest valid
    checkpoint.
    """
    from personkit.config import config_from_dict
    from personkit.engine.checkpoint import load_checkpoint, load_latest_valid, read_weights
    from personkit.models import load_strict

    path = Path(path)
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            path = path / "model.safetensors"
        else:
            found = load_latest_valid(path / "checkpoints")
            if found is None:
                raise FileNotFoundError(f"no model.safetensors or checkpoint in run dir {path}")
            path = found[0]
    if path.suffix == ".safetensors":
        state, header = read_weights(path)
        config = header["config"]
    else:
        ckpt = load_checkpoint(path)
        if "config" not in ckpt or "model" not in ckpt:
            raise ValueError(f"{path} is not a personkit checkpoint (no 'config'/'model' keys)")
        state, config = ckpt["model"], ckpt["config"]
    cfg = config_from_dict(config, source=str(path))
    model = build_model(dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, pretrained=None)))
    load_strict(model, state, source=str(path))
    return model.to(device).eval()
