"""Fixtures of the tracking tests: a tiny synthetic MOT sequence and a briefly trained tiny
model (ResNet-18 at 64×32, fake data, as ``tests/engine/engine_utils.tiny_config``).

The tests skip only when the tracking extra is missing (``make test`` installs it).
"""

import sys
from pathlib import Path

import pytest
import torch

_ENGINE = str(Path(__file__).resolve().parent.parent / "engine")
if _ENGINE not in sys.path:
    sys.path.insert(0, _ENGINE)


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this folder on one torch thread (tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def extra():
    for module in ("boxmot", "trackeval", "av"):
        pytest.importorskip(module, reason="the tracking extra is not installed")


@pytest.fixture(scope="session")
def sequence(tmp_path_factory):
    from personkit.synth.mot import write_mot_sequence

    return write_mot_sequence(tmp_path_factory.mktemp("mot") / "tiny-0", "tiny", seed=0)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A run directory of a tiny four-task model trained for a few steps on fake data."""
    from engine_utils import tiny_config

    from personkit.config import config_from_dict
    from personkit.engine.build import build_trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run")
    cfg = config_from_dict(tiny_config({"iterations": 4, "checkpoint_every": 4}))
    build_trainer(cfg, run, progress=False).train()
    torch.set_num_threads(threads)
    return run
