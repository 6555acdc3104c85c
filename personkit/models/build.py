"""The ``model`` section of a config -> the :class:`MultiTaskModel` it describes, and the
model variants ``personkit bench`` compares."""

from __future__ import annotations

import dataclasses

import torch

from personkit.config import ModelConfig
from personkit.data.constants import LIP_CLASSES, MARKET_ATTRIBUTES, MERGED5_CLASSES, MPII_JOINTS
from personkit.models.backbone import ResNetBackbone
from personkit.models.multitask import TASKS, ModelMeta, MultiTaskModel


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


def bench_variant_configs(cfg: ModelConfig) -> dict[str, ModelConfig]:
    """``personkit bench``'s model variants of ``cfg`` (same backbone and sizes): the
    four-task model, each single-task model and the four-task model with a light FPN."""
    with_heads = lambda heads: dataclasses.replace(cfg, heads=heads)  # noqa: E731
    out = {"four-task": with_heads(TASKS)}
    for task in TASKS:
        out[f"{task}-only"] = dataclasses.replace(with_heads((task,)), sharing="single")
    out["four-task-light"] = dataclasses.replace(
        out["four-task"], fpn_channels=min(cfg.fpn_channels, LIGHT_FPN),
        seg_channels=min(cfg.seg_channels, LIGHT_SEG))
    return out


def build_bench_models(cfg: ModelConfig, seed: int = 0
                       ) -> tuple[MultiTaskModel, dict[str, MultiTaskModel]]:
    """The four-task model and its variants (:func:`bench_variant_configs`), randomly
    initialised (pretrained weights are never loaded: speed does not depend on them)."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=None))
    models = {name: build_model(c) for name, c in bench_variant_configs(cfg).items()}
    return models.pop("four-task"), models
