"""Fixtures shared across test folders."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ``tiny`` world (Market-, MPII- and LIP-like sets), rendered once per
    session; tests must not write into it."""
    from personkit.synth import synthesize

    root = tmp_path_factory.mktemp("tiny_world")
    synthesize(root, "tiny", seed=0, workers=1)
    return root
