"""Fixtures shared across test folders. Also puts ``tests/`` on ``sys.path`` so that test
helpers shared across folders (``baselines``) import by name: pytest runs with
``--import-mode=importlib``, which does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ``tiny`` world (Market-, MPII- and LIP-like sets), rendered once per
    session; tests must not write into it."""
    from personkit.synth import synthesize

    root = tmp_path_factory.mktemp("tiny_world")
    synthesize(root, "tiny", seed=0, workers=1)
    return root


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (restored afterwards): on a shared 2-core machine a
    second OpenMP thread makes small steps many times slower. Folders opt in with an autouse
    fixture that requests this one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
