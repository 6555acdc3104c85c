"""Tiny untrained models and checkpoints for the inference tests (ResNet-18 at 64×32).

Torch runs on one thread in these tests: on the shared 2-core machine a second OpenMP thread
makes small forward passes many times slower.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TINY, make_model, save_model  # noqa: F401  (tests/tiny_models.py)


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
