"""The float32 rounding bound that every cross-path comparison uses (models/numerics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from personkit.models import ModelMeta, MultiTaskModel, ResNetBackbone
from personkit.models.numerics import FP32_UNIT_ROUNDOFF, fp32_tolerance, relative_difference


def _model(name: str) -> MultiTaskModel:
    torch.manual_seed(0)
    meta = ModelMeta((64, 32), (0.5,) * 3, (0.25,) * 3, ("reid",))
    return MultiTaskModel(ResNetBackbone(name, "group"), ["reid"], meta=meta).eval()


def test_the_bound_sums_two_sqrt_k_unit_roundoffs_per_layer():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1, groups=2), nn.Linear(10, 2))
    lengths = (3 * 9, 4, 10)  # a grouped conv sums over its group's channels only
    expected = 2 * FP32_UNIT_ROUNDOFF * sum(math.sqrt(k) for k in lengths)
    assert fp32_tolerance(net) == pytest.approx(expected, rel=1e-12)
    assert fp32_tolerance(_model("resnet34")) > fp32_tolerance(_model("resnet18"))


def test_two_memory_formats_stay_within_the_bound():
    """channels_last and contiguous pick other kernels: a real pair of execution paths."""
    model = _model("resnet18")
    x = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).embedding
        other = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)).embedding
    assert relative_difference(ref, other) <= fp32_tolerance(model)


def test_relative_difference_is_relative_to_the_reference_and_checks_shapes():
    assert relative_difference([2.0, -4.0], [2.0, -3.0]) == 0.25
    assert relative_difference(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        relative_difference(np.zeros(3), np.zeros(4))

