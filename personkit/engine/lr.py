"""Learning-rate schedules as factors of the base rate over the run's progress.

``exp`` is the authors' schedule (constant, then exponential decay to ``final_factor``; their
``huanghoujing`` preset: 2e-4 until epoch 151 of 300, then down to 0.001×). ``multistep`` multiplies
by ``gamma`` at each milestone. Times are fractions of the run; the factor is evaluated every
iteration (the authors stepped once per epoch, a staircase version of the same curve).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(progress: float, kind: str = "exp", decay_start: float = 0.5,
              decay_end: float = 1.0, final_factor: float = 0.001,
              milestones: Sequence[float] = (), gamma: float = 0.1) -> float:
    """The LR multiplier at ``progress`` in [0, 1] of the run."""
    if kind == "constant":
        return 1.0
    if kind == "multistep":
        return gamma ** sum(progress >= m for m in milestones)
    if kind == "exp":
        if progress < decay_start:
            return 1.0
        span = max(decay_end - decay_start, 1e-12)
        return final_factor ** min(1.0, (progress - decay_start) / span)
    raise ValueError(f"unknown LR schedule {kind!r}; valid: exp, multistep, constant")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, kind: str = "exp",
                       **kwargs: float | Sequence[float]) -> LambdaLR:
    """A per-iteration :class:`LambdaLR` following :func:`lr_factor`."""
    lr_factor(0.0, kind, **kwargs)  # validate the arguments now, not at the first step
    total = max(1, total_steps)
    return LambdaLR(optimizer, lambda step: lr_factor(step / total, kind, **kwargs))
