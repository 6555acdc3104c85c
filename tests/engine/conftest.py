"""Fixtures of the engine tests; their helpers are in ``engine_utils.py`` (``import
engine_utils``: this folder is put on ``sys.path`` because pytest runs with
``--import-mode=importlib``).

Torch runs on one thread in these tests: on a shared 2-core machine a second OpenMP thread
makes steps many times slower, and runs compared bit for bit must use the same thread count in
and out of subprocesses.
"""

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread; the global determinism flag is restored afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
