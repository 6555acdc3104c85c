"""Fixtures of the index tests: entries of a synthetic embedding space, and the tiny untrained
model's checkpoint (tests/tiny_models.py). The tests skip when the index extra is missing."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="session", autouse=True)
def index_extra():
    pytest.importorskip("lancedb", reason="the index extra is not installed")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from tiny_models import make_model, save_model

    return save_model(make_model(), tmp_path_factory.mktemp("ckpt") / "model.safetensors")
