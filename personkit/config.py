"""Typed, frozen experiment configuration loaded from YAML.

A config file has four sections, ``model``, ``data``, ``loss`` and ``train``, each a frozen
dataclass below. This module is the only place defaults live. Objects never read a config:
:mod:`personkit.build` turns these sections into explicit constructor arguments.

Validation is strict. An unknown key or a value of the wrong type is a :class:`ConfigError`
that names the key and the file. Command-line overrides use ``section.key=value`` (list items
by index, e.g. ``data.train.0.batch_size=16``); values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from personkit.data.constants import IMAGENET_MEAN, IMAGENET_STD, MARKET_ATTRIBUTES

TaskName = Literal["reid", "id", "attributes", "pose", "segmentation"]
ALL_HEADS: tuple[str, ...] = ("reid", "id", "attributes", "pose", "segmentation")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "resnet50"  # any timm ResNet: resnet18/34/50/101, ...
    norm: Literal["group", "batch", "frozen_batch"] = "group"
    pretrained: str | None = None  # a local .safetensors/.pth path, or a timm hub tag


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = BackboneConfig()
    sharing: Literal["single", "multi", "split"] = "single"
    heads: tuple[TaskName, ...] = ALL_HEADS
    num_ids: int = 751  # training identities for the ID classifier
    attributes: dict[str, int] = field(
        default_factory=lambda: {k: len(v) for k, v in MARKET_ATTRIBUTES.items()}
    )
    num_joints: int = 16
    seg_classes: int = 20  # 20 LIP classes, or 5 merged classes
    fpn_channels: int = 256
    seg_channels: int = 128
    pose_features: Literal["c5", "fpn"] = "c5"  # fpn: finest FPN level (not in the paper)
    pose_window: int | None = None  # None: global soft-argmax (paper); r: within r of the peak
    input_size: tuple[int, int] = (256, 128)  # (H, W) of a person crop
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class DatasetConfig:
    name: str  # unique name, used in logs and for loss routing
    type: str  # reader: market1501 | duke | mpii | lip | market_auto | fake
    root: str = ""
    split: str = "train"
    tasks: tuple[TaskName, ...] = ()
    input_size: tuple[int, int] = (256, 128)
    sampler: Literal["pk", "random"] = "random"
    batch_size: int = 32  # random sampler
    pk_p: int = 18  # PK sampler: identities per batch
    pk_k: int = 4  # PK sampler: images per identity
    weight: float = 1.0
    augment: bool = True
    merge_parts: bool = False  # map LIP's 20 classes to the 5 merged classes
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific arguments


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # base directory of relative dataset roots ("" = the working directory)
    train: tuple[DatasetConfig, ...] = ()
    eval: tuple[DatasetConfig, ...] = ()
    interleave: Literal["proportional", "equal", "weights"] = "proportional"
    num_workers: int = 2
    on_bad_image: Literal["skip", "raise"] = "raise"


@dataclass(frozen=True)
class LossConfig:
    weights: dict[str, float] = field(default_factory=dict)  # per task; missing = 1.0
    uncertainty: bool = False  # learned uncertainty weighting (Kendall et al., CVPR 2018)
    triplet_margin: float | None = None  # None = soft margin (softplus)
    pose: Literal["l2", "l1"] = "l2"
    pose_reduction: Literal["mean", "sum"] = "mean"  # over joints; the authors' code sums (~14x)
    pose_heatmap: float = 0.0  # weight of an auxiliary heatmap cross-entropy (not in the paper)
    pose_heatmap_sigma: float = 1.0  # its Gaussian width in heatmap cells
    seg_top_k: float = 0.25  # bootstrapped CE keeps this fraction of the hardest pixels
    seg_warmup_steps: int = 5000  # kept fraction falls linearly from 1.0 over these steps


@dataclass(frozen=True)
class ScheduleConfig:
    """LR schedule. Times are fractions of the whole run (0 = start, 1 = end).

    ``exp`` is the authors' schedule: constant, then exponential decay to
    ``lr * final_factor`` (their Market preset: decay from epoch 151 of 300, i.e. 0.5).
    """

    type: Literal["exp", "multistep", "constant"] = "exp"
    decay_start: float = 0.5  # exp: constant until this fraction of the run
    decay_end: float = 1.0  # exp: reaches lr * final_factor here
    final_factor: float = 0.001
    milestones: tuple[float, ...] = ()  # multistep: fractions at which lr *= gamma
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    epochs: float | None = None  # one epoch = the sum of every dataset's batches per epoch
    iterations: int | None = None  # used when epochs is None
    lr: float = 2e-4
    optimizer: Literal["adam", "sgd"] = "adam"  # adam: the paper; sgd: with momentum below
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = 0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto = bf16/fp16 on CUDA only
    device: str = "auto"
    grad_clip: float | None = None
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0 = only at the end
    max_nonfinite_steps: int = 10  # stop after this many non-finite losses in a row
    sync_bn: bool = False  # DDP: BatchNorm layers -> SyncBatchNorm (GPUs only)
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact resume on CPU)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply ``section.key=value`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    source = str(path) + (" (with overrides)" if overrides else "")
    return config_from_dict(apply_overrides(raw, overrides, source), source)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain nested dict (as read from YAML) into a :class:`Config`."""
    cfg = _convert(Config, raw, "", source)
    _check_semantics(cfg, source)
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str], source: str) -> dict:
    """Return a copy of ``raw`` with ``a.b.c=value`` overrides applied."""
    raw = _deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not of the form section.key=value")
        value = yaml.safe_load(text) if text else None
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]), source)
        _assign(node, parts[-1], value, key, source)
    return raw


def config_to_dict(cfg: Any) -> Any:
    """Plain nested dicts/lists (YAML-safe) of a config dataclass."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg`` as YAML that :func:`load_config` reads back unchanged."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------- internals


def _deepcopy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def _child(node: Any, part: str, where: str, source: str) -> Any:
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise ConfigError(f"{source}: override key '{where}': no list item {part}")
        return node[int(part)]
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: override key '{where}' goes below a plain value")
    return node.setdefault(part, {})


def _assign(node: Any, part: str, value: Any, key: str, source: str) -> None:
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise ConfigError(f"{source}: override key '{key}': no list item {part}")
        node[int(part)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"{source}: override key '{key}' goes below a plain value")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and convert it (lists -> tuples etc.)."""
    fail = ConfigError(f"{source}: '{where or '<root>'}': expected {_type_name(tp)}, got {value!r}")
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where, source)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        for option in options:
            try:
                return _convert(option, value, where, source)
            except ConfigError:
                continue
        raise fail
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{source}: '{where}': {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        return _convert_tuple(tp, value, where, source, fail)
    if origin is dict:
        if not isinstance(value, dict):
            raise fail
        _, vt = typing.get_args(tp)
        return {str(k): _convert(vt, v, f"{where}.{k}", source) for k, v in value.items()}
    return _convert_scalar(tp, value, fail)


def _convert_tuple(tp: Any, value: Any, where: str, source: str, fail: ConfigError) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise fail
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{where}.{i}", source) for i, v in enumerate(value))
    if len(args) != len(value):
        raise fail
    pairs = enumerate(zip(args, value, strict=True))
    return tuple(_convert(a, v, f"{where}.{i}", source) for i, (a, v) in pairs)


def _convert_scalar(tp: Any, value: Any, fail: ConfigError) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise fail from None
        raise fail
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail
    raise fail


def _convert_dataclass(cls: Any, value: Any, where: str, source: str) -> Any:
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{where or '<root>'}': expected a mapping, got {value!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in value:
        if key not in names:
            valid = ", ".join(sorted(names))
            key_path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{source}: unknown key '{key_path}' (valid keys here: {valid})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key_path = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], key_path, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{key_path}'")
    return cls(**kwargs)


def _check_semantics(cfg: Config, source: str) -> None:
    """Cross-field checks that types alone cannot express."""
    for section in ("train", "eval"):
        names = [d.name for d in getattr(cfg.data, section)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{source}: 'data.{section}' names must be unique, repeated: {dupes}")
    if cfg.train.epochs is not None and cfg.train.iterations is not None:
        raise ConfigError(f"{source}: set only one of 'train.epochs' and 'train.iterations'")
    for i, d in enumerate(cfg.data.train):
        unknown = [t for t in d.tasks if t not in cfg.model.heads]
        if unknown:
            raise ConfigError(
                f"{source}: 'data.train.{i}.tasks' ({d.name}) asks for {unknown}, "
                f"but model.heads is {list(cfg.model.heads)}"
            )
    for key in cfg.loss.weights:
        if key not in ALL_HEADS:
            raise ConfigError(f"{source}: unknown task 'loss.weights.{key}' (valid: {ALL_HEADS})")
