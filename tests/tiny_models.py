"""The tiny untrained four-task model of the inference, index and service tests (ResNet-18
with GroupNorm at 64×32; three attributes), built deterministically, and its checkpoint."""

from __future__ import annotations

import dataclasses

import torch

from personkit.checkpoint import save_weights
from personkit.config import BackboneConfig, Config, ModelConfig, config_to_dict
from personkit.models.build import build_model

TINY = ModelConfig(
    backbone=BackboneConfig(name="resnet18", norm="group"),
    heads=("reid", "id", "attributes", "pose", "segmentation"),
    num_ids=4, attributes={"gender": 2, "backpack": 2, "upcolor": 8}, seg_classes=20,
    fpn_channels=32, seg_channels=16, input_size=(64, 32),
)


def make_model(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(dataclasses.replace(TINY, **changes)).eval()


def save_model(model: torch.nn.Module, path, **changes):
    cfg = Config(model=dataclasses.replace(TINY, **changes))
    return save_weights(model, path, config_to_dict(cfg), model.meta.to_dict())
