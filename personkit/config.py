"""Typed, frozen experiment configuration loaded from YAML.

A config file has four sections, ``model``, ``data``, ``loss`` and ``train``, each a frozen
dataclass below. This module is the only place defaults live. Objects never read a config:
the ``build`` module next to what they build turns these sections into explicit constructor
arguments (:mod:`personkit.models.build` for the model, :mod:`personkit.engine.build` and
:mod:`personkit.engine.datasets` for training and its data).

A file may start from others with ``base: other.yaml`` (or a list), resolved relative to it
and deep-merged (mappings key by key; lists and values replace); see :func:`read_raw_config`.

Validation is strict. An unknown key or a value of the wrong type is a :class:`ConfigError`
that names the key and the file. Command-line overrides use ``section.key=value`` (list items
by index, e.g. ``data.train.0.batch_size=16``); values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from personkit.data.constants import IMAGENET_MEAN, IMAGENET_STD, MARKET_ATTRIBUTES

TaskName = Literal["reid", "id", "attributes", "pose", "segmentation"]
#: Every head a model can have, in output order: the one list of tasks.
ALL_HEADS: tuple[str, ...] = typing.get_args(TaskName)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: finite, and within the given bounds.

    Applies to the value itself, to each item of a tuple and to each value of a dict;
    ``None`` (an optional setting left unset) always passes.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, x: float) -> bool:
        return (math.isfinite(x) and (self.ge is None or x >= self.ge)
                and (self.gt is None or x > self.gt) and (self.le is None or x <= self.le)
                and (self.lt is None or x < self.lt))

    def __str__(self) -> str:
        bounds = [f"{op} {_num(v)}" for op, v in
                  ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                  if v is not None]
        return "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def num(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
        ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None) -> Any:
    """A numeric dataclass field with its allowed :class:`Range` (checked on load)."""
    return field(default=default, default_factory=factory,
                 metadata={"range": Range(ge=ge, gt=gt, le=le, lt=lt)})


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
    # ID classifier size; None = the identities of the training data
    num_ids: int | None = num(751, ge=1)
    attributes: dict[str, int] = num(  # attribute -> number of classes
        factory=lambda: {k: len(v) for k, v in MARKET_ATTRIBUTES.items()}, ge=2)
    num_joints: int = num(16, ge=1)
    seg_classes: int = num(20, ge=2)  # 20 LIP classes, or 5 merged classes
    fpn_channels: int = num(256, ge=1)
    seg_channels: int = num(128, ge=1)
    pose_features: Literal["c5", "fpn"] = "c5"  # fpn: finest FPN level (not in the paper)
    # None: global soft-argmax (paper); r: within r of the peak
    pose_window: int | None = num(None, ge=0)
    input_size: tuple[int, int] = num((256, 128), ge=1)  # (H, W) of a person crop
    init_from: str | None = None  # a run dir or weight file to start from (docs/training.md)
    init_include: tuple[str, ...] = ("*",)  # fnmatch patterns of state keys, e.g. backbone.*
    init_exclude: tuple[str, ...] = ()
    keep_untrained_heads: bool = False  # heads no data.train task trains: warn, keep them
    mean: tuple[float, float, float] = num(IMAGENET_MEAN)  # any finite values
    std: tuple[float, float, float] = num(IMAGENET_STD, gt=0)


@dataclass(frozen=True)
class DatasetConfig:
    name: str  # unique name, used in logs and for loss routing
    type: str  # reader: market1501 | duke | mpii | lip | market_auto | fake
    root: str = ""
    split: str = "train"
    tasks: tuple[TaskName, ...] = ()
    input_size: tuple[int, int] = num((256, 128), ge=1)
    sampler: Literal["pk", "random"] = "random"
    batch_size: int = num(32, ge=1)  # random sampler
    pk_p: int = num(18, ge=1)  # PK sampler: identities per batch
    pk_k: int = num(4, ge=1)  # PK sampler: images per identity
    # PK sampler: identities drawn in proportion to how rare their attribute classes are
    # (data/samplers.py rarity_weights), or each once an epoch (none)
    pk_balance: Literal["none", "attributes"] = "none"
    weight: float = num(1.0, ge=0)  # interleave: weights
    augment: bool = True
    merge_parts: bool = False  # map LIP's 20 classes to the 5 merged classes
    # train only: seeded share of the identities (or images) kept (Fig. 5)
    fraction: float = num(1.0, gt=0, le=1)
    fraction_unit: Literal["ids", "images"] = "ids"
    # the subset depends on this alone (same in every run and rank)
    fraction_seed: int = num(0, ge=0)
    options: dict[str, Any] = field(default_factory=dict)  # reader-specific arguments


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # base directory of relative dataset roots ("" = the working directory)
    train: tuple[DatasetConfig, ...] = ()
    eval: tuple[DatasetConfig, ...] = ()
    interleave: Literal["proportional", "equal", "weights"] = "proportional"
    num_workers: int = num(2, ge=0)
    on_bad_image: Literal["skip", "raise"] = "raise"


@dataclass(frozen=True)
class LossConfig:
    weights: dict[str, float] = num(factory=dict, ge=0)  # per task; missing = 1.0
    uncertainty: bool = False  # learned uncertainty weighting (Kendall et al., CVPR 2018)
    triplet_margin: float | None = num(None, ge=0)  # None = soft margin (softplus)
    pose: Literal["l2", "l1"] = "l2"
    pose_reduction: Literal["mean", "sum"] = "mean"  # over joints; the authors' code sums (~14x)
    # weight of an auxiliary heatmap cross-entropy (not in the paper)
    pose_heatmap: float = num(0.0, ge=0)
    pose_heatmap_sigma: float = num(1.0, gt=0)  # its Gaussian width in heatmap cells
    # class weights of each attribute's cross-entropy from the training labels: none (the
    # paper), deepmar (exp(1 - p_c), DeepMAR) or inverse (1 / (K p_c)); losses/classification.py
    attribute_balance: Literal["none", "deepmar", "inverse"] = "none"
    # bootstrapped CE keeps this fraction of the hardest pixels
    seg_top_k: float = num(0.25, gt=0, le=1)
    # the kept fraction falls linearly from 1.0 over these steps
    seg_warmup_steps: int = num(5000, ge=0)


@dataclass(frozen=True)
class ScheduleConfig:
    """LR schedule. Times are fractions of the whole run (0 = start, 1 = end).

    ``exp`` is the authors' schedule: constant, then exponential decay to
    ``lr * final_factor`` (their Market preset: decay from epoch 151 of 300, i.e. 0.5).
    """

    type: Literal["exp", "multistep", "constant"] = "exp"
    decay_start: float = num(0.5, ge=0, le=1)  # exp: constant until this fraction of the run
    # exp: reaches lr * final_factor here; > 1 decays past the end (the authors' pose schedule)
    decay_end: float = num(1.0, gt=0)
    final_factor: float = num(0.001, gt=0, le=1)
    milestones: tuple[float, ...] = num((), gt=0, lt=1)  # multistep: fractions at which lr *= gamma
    gamma: float = num(0.1, gt=0)


@dataclass(frozen=True)
class TrainConfig:
    # one epoch = the sum of every dataset's batches per epoch
    epochs: float | None = num(None, gt=0)
    iterations: int | None = num(None, ge=1)  # used when epochs is None
    lr: float = num(2e-4, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"  # adam: the paper; sgd: with momentum below
    momentum: float = num(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = num(0.0, ge=0)
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = num(0, ge=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto = bf16/fp16 on CUDA only
    device: str = "auto"
    grad_clip: float | None = num(None, gt=0)  # max gradient norm; None: no clipping
    log_every: int = num(10, ge=1)
    checkpoint_every: int = num(1000, ge=0)  # 0: only at the end
    keep_checkpoints: int = num(3, ge=0)  # newest kept; 0: keep all
    # steps between evaluations of data.eval; 0 = none (use personkit eval)
    eval_every: int = num(0, ge=0)
    best_metric: str | None = None  # e.g. market.reid.mAP: keep model_best.safetensors
    max_nonfinite_steps: int = num(10, ge=1)  # stop after this many non-finite losses in a row
    sync_bn: bool = False  # DDP: BatchNorm layers -> SyncBatchNorm (GPUs only)
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact resume on CPU)
    # channels_last weights and activations: 1.03-1.14x per step on a 2-core CPU
    # (benchmarks/bench_train_step.py), the layout oneDNN and tensor cores prefer
    channels_last: bool = True


@dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class DetectorModelConfig:
    """A person detector (``personkit train-detector``): torchvision's FCOS on a timm
    backbone's strides 8/16/32 with a small FPN; frames are resized inside the model."""

    backbone: str = "resnet10t"  # any timm model with features_only (3 levels used)
    # a multiple of 32 (the FCOS head's GroupNorm groups), >= 64: P7 may be 1x1 on small frames
    fpn_channels: int = num(64, ge=64)
    min_size: int = num(180, ge=16)  # the short side frames are resized to
    max_size: int = num(320, ge=16)  # ... and the long side at most
    score_threshold: float = num(0.2, ge=0, le=1)  # kept by the model (CLI filters further)


@dataclass(frozen=True)
class SequenceSetConfig:
    """Synthetic MOT sequences (``personkit synth-mot``), rendered when missing."""

    preset: str = "crossing"
    seeds: tuple[int, ...] = num(tuple(range(100, 112)), ge=0)
    frame_step: int = num(1, ge=1)  # every n-th frame


@dataclass(frozen=True)
class DetectorDataConfig:
    root: str = "data/mot"  # sequences live in ROOT/PRESET-SEED
    train: SequenceSetConfig = SequenceSetConfig()
    # held out: seeds disjoint from the training ones (checked)
    eval: SequenceSetConfig = SequenceSetConfig(seeds=(0, 1), frame_step=5)
    min_visibility: float = num(0.3, ge=0, le=1)  # less visible people: ignored, not targets
    flip: bool = True  # random horizontal flips in training


@dataclass(frozen=True)
class DetectorTrainConfig:
    iterations: int = num(600, ge=1)
    batch_size: int = num(8, ge=1)  # frames per step
    lr: float = num(0.01, gt=0)  # SGD with momentum; linear warm-up, then cosine to 0
    momentum: float = num(0.9, ge=0, lt=1)
    weight_decay: float = num(1e-4, ge=0)
    warmup_steps: int = num(50, ge=0)
    grad_clip: float | None = num(10.0, gt=0)
    seed: int = num(0, ge=0)
    device: str = "auto"
    log_every: int = num(10, ge=1)
    checkpoint_every: int = num(200, ge=0)  # 0: only at the end
    keep_checkpoints: int = num(3, ge=0)


@dataclass(frozen=True)
class DetectorConfig:
    model: DetectorModelConfig = DetectorModelConfig()
    data: DetectorDataConfig = DetectorDataConfig()
    train: DetectorTrainConfig = DetectorTrainConfig()


def load_detector_config(path: str | Path, overrides: typing.Sequence[str] = ()
                         ) -> DetectorConfig:
    """A ``personkit train-detector`` config (YAML, ``base:`` chains and overrides as
    :func:`load_config`)."""
    raw = read_raw_config(path)
    source = str(path) + (" (with overrides)" if overrides else "")
    return detector_config_from_dict(apply_overrides(raw, overrides, source), source)


def detector_config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> DetectorConfig:
    """Validate a plain dict into a :class:`DetectorConfig` (training and evaluation seeds
    must not overlap)."""
    cfg = _convert(DetectorConfig, raw, "", source)
    _check_ranges(cfg, "", source)
    if cfg.model.fpn_channels % 32:
        raise ConfigError(f"{source}: 'model.fpn_channels' must be a multiple of 32 (the FCOS "
                          f"head's 32 GroupNorm groups), got {cfg.model.fpn_channels}")
    both = sorted(set(cfg.data.train.seeds) & set(cfg.data.eval.seeds))
    if both and cfg.data.train.preset == cfg.data.eval.preset:
        raise ConfigError(f"{source}: 'data.eval.seeds' {both} are also training seeds; "
                          f"evaluation sequences must be held out")
    return cfg


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config (resolving its ``base:`` chain), apply ``section.key=value``
    overrides and validate it."""
    path = Path(path)
    raw = read_raw_config(path)
    source = str(path) + (" (with overrides)" if overrides else "")
    return config_from_dict(apply_overrides(raw, overrides, source), source)


def read_raw_config(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a plain dict, with its ``base:`` files merged in.

    ``base:`` is a path (or a list of paths, merged in order) relative to the file that names
    it. The file's own keys are deep-merged over its bases: mappings merge key by key; lists
    and plain values replace. A file that (indirectly) bases on itself is an error.
    """
    path = Path(path)
    if not path.is_file():
        where = f" (base of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ConfigError(f"{path}: 'base' chain has a cycle: {cycle}")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping, got {type(raw).__name__}")
    bases = raw.pop("base", None)
    if bases is None:
        return raw
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _deep_merge(merged, read_raw_config(path.parent / base, (*_chain, resolved)))
    return _deep_merge(merged, raw)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = _deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _deepcopy(value)
    return out


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


def config_diff(old: Any, new: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every setting that differs between two configs
    (as :func:`config_to_dict` dicts); keys present in only one side count as changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{where}.{key}" if where else str(key)
            found += config_diff(old.get(key), new.get(key), sub)
        return found
    if (isinstance(old, (list, tuple)) and isinstance(new, (list, tuple))
            and len(old) == len(new) and any(isinstance(v, dict) for v in old)):
        return [c for i, (a, b) in enumerate(zip(old, new, strict=True))
                for c in config_diff(a, b, f"{where}.{i}")]
    same = (list(old) == list(new) if isinstance(old, (list, tuple))
            and isinstance(new, (list, tuple)) else old == new)
    return [] if same else [(where, old, new)]


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


def _check_ranges(node: Any, where: str, source: str) -> None:
    """Every ranged field of ``node`` (a config dataclass) and of the dataclasses below it."""
    for f in dataclasses.fields(node):
        key = f"{where}.{f.name}" if where else f.name
        value = getattr(node, f.name)
        rng = f.metadata.get("range")
        if rng is not None:
            items = (value.items() if isinstance(value, dict) else
                     enumerate(value) if isinstance(value, tuple) else [(None, value)])
            for sub, x in items:
                if x is not None and not rng.contains(x):
                    item = key if sub is None else f"{key}.{sub}"
                    raise ConfigError(f"{source}: '{item}' must be {rng}, got {x!r}")
        elif dataclasses.is_dataclass(value):
            _check_ranges(value, key, source)
        elif isinstance(value, tuple):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    _check_ranges(v, f"{key}.{i}", source)


def _check_semantics(cfg: Config, source: str) -> None:
    """Range checks of every numeric field, then cross-field checks that types cannot express."""
    _check_ranges(cfg, "", source)
    s = cfg.train.schedule
    if s.decay_start > s.decay_end:
        raise ConfigError(f"{source}: 'train.schedule.decay_start' ({s.decay_start}) must be <= "
                          f"'train.schedule.decay_end' ({s.decay_end})")
    if list(s.milestones) != sorted(s.milestones):
        raise ConfigError(f"{source}: 'train.schedule.milestones' must be in increasing order, "
                          f"got {list(s.milestones)}")
    for section in ("train", "eval"):
        names = [d.name for d in getattr(cfg.data, section)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{source}: 'data.{section}' names must be unique, repeated: {dupes}")
    if cfg.train.epochs is not None and cfg.train.iterations is not None:
        raise ConfigError(f"{source}: set only one of 'train.epochs' and 'train.iterations'")
    for section in ("train", "eval"):
        for i, d in enumerate(getattr(cfg.data, section)):
            if not 0.0 < d.fraction <= 1.0 or (section == "eval" and d.fraction != 1.0):
                allowed = "in (0, 1]" if section == "train" else "1 (evaluation uses whole sets)"
                raise ConfigError(f"{source}: 'data.{section}.{i}.fraction' ({d.name}) must be "
                                  f"{allowed}, got {d.fraction}")
    for i, d in enumerate(cfg.data.train):
        unknown = [t for t in d.tasks if t not in cfg.model.heads]
        if unknown:
            raise ConfigError(
                f"{source}: 'data.train.{i}.tasks' ({d.name}) asks for {unknown}, "
                f"but model.heads is {list(cfg.model.heads)}"
            )
    m = cfg.model
    if m.pose_features == "fpn" and m.sharing != "single":
        raise ConfigError(f"{source}: 'model.pose_features' fpn needs 'model.sharing' single, "
                          f"got {m.sharing!r} (split and multi branch their C5; use c5)")
    for key in cfg.loss.weights:
        if key not in ALL_HEADS:
            raise ConfigError(f"{source}: unknown task 'loss.weights.{key}' (valid: {ALL_HEADS})")
