"""How far two correct float32 executions of the same network may differ.

Two execution paths of one model (another engine, batch size, memory format, thread count or
CPU) compute the same sums in another order, so their outputs differ by rounding. For a sum
of ``K`` products the rounding error is below ``λ·√K·u`` relative to the sum of the terms'
magnitudes with probability at least ``1 − 2·exp(−λ²/2)`` (``u`` = 2⁻²⁴, the float32 unit
roundoff; Higham & Mary, "A new approach to probabilistic rounding error analysis", SIAM J.
Sci. Comput. 2019); the worst case ``K·u`` is reached only by sign-aligned errors. Errors of
successive layers add to first order. :func:`fp32_tolerance` sums ``λ·√K·u`` over every
convolution and linear layer with λ = 2, a bound on the relative difference of any output
(measured against that output's largest magnitude). Decisions taken on such outputs (an
arg-max, a ranking, a PCKh threshold) can flip where two candidates are closer than it.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from torch import nn

FP32_UNIT_ROUNDOFF = 2.0 ** -24
BF16_UNIT_ROUNDOFF = 2.0 ** -8
LAMBDA = 2.0


def fp32_tolerance(model: nn.Module) -> float:
    """The relative difference two float32 executions of ``model`` may show (see module)."""
    lengths = [m.weight[0].numel() for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    return LAMBDA * FP32_UNIT_ROUNDOFF * sum(math.sqrt(k) for k in lengths)


def bf16_tolerance(model: nn.Module) -> float:
    """The relative difference (norm-wise, :func:`relative_difference`) between ``model`` in
    float32 and in bf16 arithmetic (torch autocast, OpenVINO bf16): each convolution and linear
    layer rounds its inputs and weights to bf16 once (relative error at most ``u`` = 2⁻⁸ each,
    ``√2·u`` for the two, norm-wise), accumulating in float32 (its own rounding is negligible
    beside it); the ``L`` layers' errors add as independent terms, ``√L``; λ = 2."""
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    return LAMBDA * math.sqrt(2.0) * BF16_UNIT_ROUNDOFF * math.sqrt(layers)


def relative_difference(reference: ArrayLike, other: ArrayLike) -> float:
    """``max|reference − other|`` over ``max|reference|``: the measure
    :func:`fp32_tolerance` bounds (0 for two empty arrays)."""
    ref, got = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
    if not ref.size:
        return 0.0
    return float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))
