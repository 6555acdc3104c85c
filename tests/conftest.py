"""Fixtures shared across test folders. Also puts ``tests/`` on ``sys.path`` so that test
helpers shared across folders (``baselines``) import by name: pytest runs with
``--import-mode=importlib``, which does not."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on the two cores: one torch thread each, or four
    # OpenMP threads would share two cores and every step would wait on a descheduled one.
    torch.set_num_threads(1)


# Under `make test` two workers take whole modules (pytest-xdist --dist loadfile) in
# collection order; the longest modules start first so that none is left running alone at the
# end (longest-processing-time-first scheduling).
LONGEST_FIRST = ("test_learnability.py", "test_study.py", "test_eval_engines.py",
                 "test_distributed.py", "test_engines.py", "test_annotate.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module is kept


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
