"""Backbone, heads and the composed multi-task model."""

from personkit.models.backbone import ResNetBackbone
from personkit.models.multitask import (
    HEADS,
    TASKS,
    ModelMeta,
    MultiTaskModel,
    PersonOutputs,
    Trunk,
    flip_tta_embedding,
)
from personkit.models.weights import WeightsError, load_state_dict_file, load_strict

__all__ = [
    "HEADS", "TASKS", "ModelMeta", "MultiTaskModel", "PersonOutputs", "ResNetBackbone",
    "WeightsError", "Trunk", "flip_tta_embedding", "load_state_dict_file", "load_strict",
]
