"""Fixtures of the deployment tests (personkit/deploy/): torch on one thread, as in
tests/inference (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test of this folder on one torch thread (tests/conftest.py)."""
    yield
