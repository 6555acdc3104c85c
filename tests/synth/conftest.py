"""Shared synthetic worlds for the synth tests (the tiny preset renders in about 2 s)."""

from __future__ import annotations

import pytest

from personkit.synth import SynthSummary, synthesize


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    """The tiny world with seed 0, rendered in-process."""
    return synthesize(tmp_path_factory.mktemp("synth_seed0"), "tiny", seed=0, workers=1)
