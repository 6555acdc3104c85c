"""The one place where a :class:`~personkit.config.Config` becomes objects.

Every class in personkit takes explicit arguments; these functions read the config sections
and pass them on. Names are looked up in plain dicts, and an unknown name is an error listing
the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from personkit.config import Config, DatasetConfig, ModelConfig, config_to_dict
from personkit.data.constants import LIP_CLASSES, MARKET_ATTRIBUTES, MERGED5_CLASSES, MPII_JOINTS
from personkit.data.dataset import PersonDataset
from personkit.data.datasets import DATASETS, dataset_spec
from personkit.data.fake import FakePersonDataset
from personkit.data.fractions import subset_records
from personkit.data.io import wrap_error
from personkit.data.records import PersonRecord
from personkit.data.samplers import DatasetSchedule, PKBatchSampler, RandomBatchSampler
from personkit.engine import distributed
from personkit.engine.lr import build_lr_scheduler
from personkit.engine.preflight import check_training_data
from personkit.engine.trainer import Trainer, TrainSource
from personkit.losses import MultiTaskLoss
from personkit.models import ModelMeta, MultiTaskModel, ResNetBackbone


def _names(known: tuple[str, ...], n: int) -> tuple[str, ...]:
    """``known`` names if there are ``n`` of them, else "0".."n-1"."""
    return known if len(known) == n else tuple(str(i) for i in range(n))


def build_model(cfg: ModelConfig) -> MultiTaskModel:
    """The multi-task model described by the ``model`` section."""
    if cfg.num_ids is None and "id" in cfg.heads:
        raise ValueError("model.num_ids is null (size the ID classifier from the training "
                         "data): build the model through build_trainer, or set model.num_ids")
    backbone = ResNetBackbone(cfg.backbone.name, cfg.backbone.norm, cfg.backbone.pretrained)
    parts = MERGED5_CLASSES if cfg.seg_classes == 5 else _names(LIP_CLASSES, cfg.seg_classes)
    meta = ModelMeta(
        input_size=cfg.input_size, mean=cfg.mean, std=cfg.std, heads=cfg.heads,
        joint_names=_names(MPII_JOINTS, cfg.num_joints), part_classes=parts,
        attributes={a: _names(MARKET_ATTRIBUTES.get(a, ()), n) for a, n in cfg.attributes.items()},
        num_ids=cfg.num_ids or 0, backbone=cfg.backbone.name, norm=cfg.backbone.norm,
    )
    return MultiTaskModel(
        backbone, cfg.heads, sharing=cfg.sharing, num_ids=cfg.num_ids or 0,
        attributes=cfg.attributes,
        num_joints=cfg.num_joints, seg_classes=cfg.seg_classes, fpn_channels=cfg.fpn_channels,
        seg_channels=cfg.seg_channels, pose_features=cfg.pose_features,
        pose_window=cfg.pose_window, meta=meta,
    )


LIGHT_FPN, LIGHT_SEG = 128, 64  # ``bench``'s lighter segmentation option: FPN, branch widths
BENCH_TASKS = ("reid", "attributes", "pose", "segmentation")  # the ``id`` head: training only


def bench_variant_configs(cfg: ModelConfig) -> dict[str, ModelConfig]:
    """``personkit bench``'s model variants of ``cfg`` (same backbone and sizes): the
    four-task model, each single-task model and the four-task model with a light FPN."""
    with_heads = lambda heads: dataclasses.replace(cfg, heads=heads)  # noqa: E731
    out = {"four-task": with_heads(BENCH_TASKS)}
    for task in BENCH_TASKS:
        out[f"{task}-only"] = dataclasses.replace(with_heads((task,)), sharing="single")
    out["four-task-light"] = dataclasses.replace(
        out["four-task"], fpn_channels=min(cfg.fpn_channels, LIGHT_FPN),
        seg_channels=min(cfg.seg_channels, LIGHT_SEG))
    return out


def model_config_of(source: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> ModelConfig:
    """The ``model`` section of a YAML config, a checkpoint, run dir or export (its stored
    config), or of the defaults (the paper's ResNet-50 GN at 256×128), with ``overrides``."""
    from personkit.config import apply_overrides, config_from_dict, load_config
    from personkit.models.loading import stored_config

    if source is None:
        return config_from_dict(apply_overrides({}, overrides, "<defaults>"), "<defaults>").model
    if str(source).endswith((".yaml", ".yml")):
        return load_config(source, overrides).model
    raw, where = stored_config(source)
    return config_from_dict(apply_overrides(raw, overrides, where), where).model


def build_bench_models(cfg: ModelConfig, seed: int = 0
                       ) -> tuple[MultiTaskModel, dict[str, MultiTaskModel]]:
    """The four-task model and its variants (:func:`bench_variant_configs`), randomly
    initialised (pretrained weights are never loaded: speed does not depend on them)."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))
    models = {name: build_model(c) for name, c in bench_variant_configs(cfg).items()}
    return models.pop("four-task"), models


def _fake_dataset(d: DatasetConfig, cfg: Config, seed: int) -> Dataset:
    return FakePersonDataset(
        input_size=d.input_size, seg_classes=cfg.model.seg_classes,
        attribute_names=tuple(cfg.model.attributes), mean=cfg.model.mean, std=cfg.model.std,
        seed=seed, **d.options,
    )


def dataset_dir(d: DatasetConfig, data_root: str | Path | None = None) -> Path:
    """The folder of dataset entry ``d``: ``d.root``, relative to ``data_root`` (``data.root``)
    when given and ``d.root`` is relative."""
    root = Path(d.root)
    return root if data_root is None or root.is_absolute() else Path(data_root) / root


def read_records(d: DatasetConfig, split: str | None = None,
                 data_root: str | Path | None = None) -> list[PersonRecord]:
    """Records of one dataset entry through its native reader."""
    try:
        return dataset_spec(d.type).reader(dataset_dir(d, data_root), split or d.split,
                                           **d.options)
    except (ValueError, FileNotFoundError) as e:
        raise wrap_error(e, f"dataset {d.name!r}") from e


def person_dataset(d: DatasetConfig, records: list[PersonRecord], cfg: Config, train: bool,
                   seed: int = 0) -> PersonDataset:
    """Decoding, the dataset's transform preset and normalisation for ``records``."""
    spec = dataset_spec(d.type)
    transform = spec.transform(train and d.augment, d.input_size)
    names = tuple(cfg.model.attributes) if "attributes" in d.tasks else None
    if names is not None and tuple(spec.attributes) != names:
        raise ValueError(f"dataset {d.name!r}: its attributes {list(spec.attributes)} do not "
                         f"match model.attributes {list(names)}")
    tasks = d.tasks if train else ()
    return PersonDataset(records, transform, tasks, cfg.model.mean, cfg.model.std,
                         pid_relabel=train, attribute_names=names, merge_parts=d.merge_parts,
                         on_bad_image=cfg.data.on_bad_image, seed=seed)


def _reader_dataset(d: DatasetConfig, cfg: Config, seed: int) -> Dataset:
    records = read_records(d, None, cfg.data.root or None)
    records = subset_records(records, d.fraction, d.fraction_seed, d.fraction_unit)
    dataset = person_dataset(d, records, cfg, train=True, seed=seed)
    if "id" in d.tasks and not _id_size_from_data(cfg) and dataset.num_ids > cfg.model.num_ids:
        raise ValueError(f"dataset {d.name!r} has {dataset.num_ids} identities but the ID "
                         f"classifier has model.num_ids={cfg.model.num_ids}")
    return dataset


def build_dataset(d: DatasetConfig, cfg: Config, seed: int = 0) -> Dataset:
    """The torch training dataset for one ``data.train`` entry."""
    if d.type != "fake" and d.type not in DATASETS:
        raise ValueError(f"dataset {d.name!r}: unknown type {d.type!r}; valid: "
                         f"{sorted(['fake', *DATASETS])}")
    if d.type == "fake" and d.fraction != 1.0:
        raise ValueError(f"dataset {d.name!r}: fraction needs a dataset read from disk, not "
                         f"type 'fake'")
    try:
        return (_fake_dataset if d.type == "fake" else _reader_dataset)(d, cfg, seed)
    except ValueError as e:
        if f"dataset {d.name!r}" in str(e):
            raise
        raise wrap_error(e, f"dataset {d.name!r}") from e


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


def build_sources(cfg: Config, rank: int = 0, world_size: int = 1) -> dict[str, TrainSource]:
    """The training datasets with this rank's samplers, checked before anything is trained:
    sampler sizes (PK identities, batch sizes over ranks), each task's labels and a training
    dataset for every model head; a ``ValueError`` names what is wrong."""
    if not cfg.data.train:
        raise ValueError("the config has no training datasets (data.train is empty)")
    sources = {}
    for i, d in enumerate(cfg.data.train):
        dataset = build_dataset(d, cfg, seed=cfg.train.seed + i)
        sampler = build_sampler(d, dataset, cfg.train.seed + i, rank, world_size)
        sources[d.name] = TrainSource(dataset, sampler, d.tasks, cfg.data.num_workers)
    check_training_data(cfg.model.heads, {n: (s.dataset, s.tasks) for n, s in sources.items()},
                        num_ids=cfg.model.num_ids if "id" in cfg.model.heads else None,
                        keep_untrained=cfg.model.keep_untrained_heads)
    return sources


def _id_size_from_data(cfg: Config) -> bool:
    """The ID classifier is sized from the data: ``model.num_ids`` is null, or an ``id``
    dataset trains on a fraction of its identities."""
    return cfg.model.num_ids is None or any(
        "id" in d.tasks and d.fraction != 1.0 for d in cfg.data.train)


def size_id_classifier(cfg: Config, sources: dict[str, TrainSource]) -> Config:
    """``cfg`` with ``model.num_ids`` set to the identities of the ``id`` training data
    (the most of any such dataset: each numbers its identities from 0) when
    :func:`_id_size_from_data`; unchanged otherwise."""
    if not _id_size_from_data(cfg) or "id" not in cfg.model.heads:
        return cfg
    counts = [getattr(s.dataset, "num_ids", 0) for s in sources.values() if "id" in s.tasks]
    if not counts or max(counts) <= 0:
        raise ValueError("model.num_ids is null but no data.train dataset with the 'id' task "
                         "has identities to size the ID classifier from")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_ids=max(counts)))


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
    from personkit.models.init_from import init_from

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
    from personkit.engine.periodic_eval import PeriodicEvaluation

    def evaluate(model: MultiTaskModel) -> dict[str, dict[str, Any]]:
        return run_evaluation(model, cfg, device=device, progress=False)

    return [PeriodicEvaluation(evaluate, cfg.train.eval_every, run_dir, cfg.train.best_metric,
                               is_main=rank == 0)]


def check_eval_settings(cfg: Config) -> None:
    """``train.eval_every`` needs ``data.eval`` sets; ``train.best_metric`` must name one of
    them and a protocol it runs for this model (``<dataset>.<protocol>.<score>``)."""
    if not cfg.train.eval_every:
        return
    if not cfg.data.eval:
        raise ValueError("train.eval_every is set but the config has no data.eval datasets")
    metric = cfg.train.best_metric
    if metric is None:
        return
    runs = {f"{d.name}.{p}" for d in cfg.data.eval for p in eval_protocols(d, cfg.model.heads)}
    if metric.count(".") < 2 or metric.rsplit(".", 1)[0] not in runs:
        raise ValueError(f"train.best_metric {metric!r} must be '<dataset>.<protocol>.<score>' "
                         f"with a dataset and protocol the evaluation runs: {sorted(runs)} "
                         f"(e.g. market.reid.mAP, lip.parts.mIoU, mpii.pose.Mean)")


def eval_protocols(d: DatasetConfig, heads: Sequence[str]) -> tuple[str, ...]:
    """The protocols :func:`run_evaluation` runs on ``d`` for a model with ``heads``."""
    if d.type != "fake" and dataset_spec(d.type).protocol == "reid":
        return tuple(p for p, on in (
            ("reid", "reid" in heads and (not d.tasks or "reid" in d.tasks)),
            ("attributes", "attributes" in heads and "attributes" in d.tasks)) if on)
    return tuple(p for p, task in (("pose", "pose"), ("parts", "segmentation"))
                 if task in heads and task in d.tasks)


def run_evaluation(model: MultiTaskModel, cfg: Config, names: Sequence[str] | None = None,
                   data_root: str | Path | None = None, device: str | torch.device = "cpu",
                   batch_size: int = 64, flip_tta: bool = True,
                   progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on the ``data.eval`` entries (all, or those named) with the official
    protocols; returns ``{dataset name: {protocol: scores}}``."""
    from personkit.engine import evaluate as ev

    if not cfg.data.eval:
        raise ValueError("the config has no evaluation datasets (data.eval is empty): add "
                         "data.eval entries to the run's config.yaml")
    entries = [d for d in cfg.data.eval if names is None or d.name in names]
    unknown = sorted(set(names or ()) - {d.name for d in cfg.data.eval})
    if unknown:
        raise ValueError(f"no evaluation dataset named {unknown}; the config has "
                         f"{[d.name for d in cfg.data.eval]}")
    data_root = data_root or cfg.data.root or None
    model = ev.in_evaluation_layout(model)
    loader = {"device": device, "batch_size": batch_size, "progress": progress,
              "num_workers": cfg.data.num_workers}
    results: dict[str, dict[str, Any]] = {}
    for d in entries:
        out: dict[str, Any] = {}
        protocols = eval_protocols(d, model.enabled)  # each only where the model has its head
        if dataset_spec(d.type).protocol == "reid":
            reid = "reid" in protocols
            attrs = tuple(model.meta.attributes) if "attributes" in protocols else None
            if reid or attrs:
                query, gallery = (read_records(d, s, data_root) for s in ("query", "gallery"))
                out.update(ev.evaluate_reid_attributes(
                    model, person_dataset(d, query, cfg, False),
                    person_dataset(d, gallery, cfg, False), query, gallery, reid=reid,
                    attribute_names=attrs, flip_tta=flip_tta, **loader))
        else:
            records = read_records(d, None, data_root)
            dataset = person_dataset(d, records, cfg, False)
            if "pose" in protocols:
                out["pose"] = ev.evaluate_pose(model, dataset, records, d.input_size,
                                               lip=dataset_spec(d.type).protocol == "lip",
                                               **loader)
            if "parts" in protocols:
                ev.check_seg_labels(records)
                out["parts"] = ev.evaluate_parts(model, dataset, records, cfg.model.seg_classes,
                                                 model.meta.part_classes, **loader)
        results[d.name] = out
    return results
