"""Tiny untrained models and checkpoints for the inference tests (ResNet-18 at 64×32).

Torch runs on one thread in these tests: on the shared 2-core machine a second OpenMP thread
makes small forward passes many times slower.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
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


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    return make_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model):
    return save_model(tiny_model, tmp_path_factory.mktemp("ckpt") / "model.safetensors")


@pytest.fixture
def scene() -> np.ndarray:
    """A 120×160 RGB image of smooth random colour blobs."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (160, 120), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="session")
def tiny():
    """``(make_model, save_model)`` helpers for tests that need a variant of the tiny model."""
    return make_model, save_model


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this folder on one torch thread (tests/conftest.py)."""
    yield
