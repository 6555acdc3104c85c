"""Paired differences between study rows and their uncertainty (docs/study.md, "Statistics").

A difference row − baseline pairs the seeds both rows ran. Where the metric is a mean over
test items both rows scored (ReID: the per-query AP and rank-1, paired by query id), the items
pair too. The interval of the mean difference is a Student t interval whose standard error
adds the two sources of randomness a study has:

* seeds (the training randomness): the variance of the per-seed mean differences over S;
* items (the finite test set, the same for every seed): the variance of the per-item
  differences (averaged over seeds) over Q.

The t distribution takes the seeds' degrees of freedom (S − 1), the fewer of the two: with 3
seeds the Welch–Satterthwaite degrees of freedom covered only about 92.6 % of simulated studies
where seeds and items vary alike (tests/study/test_stats.py), S − 1 at least 95 % whatever
the mix. Each variance estimate also holds a share of the seed × item interaction, so the sum
counts it twice: the interval is conservative, never narrower than its level says. With one
seed the training randomness is not measured: that interval covers the test set only, says
so, and no verdict uses it. (A percentile bootstrap
over 3 seeds, the rule before, can never reach past the smallest and largest of the 3
differences: its "95 %" was far less.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

LEVEL = 0.95
#: What an interval covers, by its ``kind``.
KINDS = {"seeds": "t over seeds", "seeds+items": "t over seeds and test items",
         "items": "test items only: one seed, the training randomness not measured"}


@dataclass(frozen=True)
class Interval:
    """A paired difference's mean and interval (fractions, like the metrics)."""

    mean: float
    low: float
    high: float
    seeds: int
    items: int  # paired test items per seed (0: seeds only)
    kind: str = "seeds"  # a key of KINDS
    df: float = float("nan")  # the t distribution's degrees of freedom

    def side(self) -> int:
        """+1 / -1 when the interval lies above / below zero, 0 when it contains it."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def text(self) -> str:
        what = f"{self.seeds} seeds × {self.items} items" if self.items else f"{self.seeds} seeds"
        return (f"{round(100 * LEVEL)} % CI [{100 * self.low:+.1f}, {100 * self.high:+.1f}] "
                f"({KINDS[self.kind]}; {what}, df {self.df:.1f})")


def _t_interval(mean: float, variances: list[float], df: float, level: float
                ) -> tuple[float, float]:
    """mean ± t(df)·se, se² the sum of the ``variances`` of the mean; a zero spread gives
    the point itself."""
    half = float(_stats.t.ppf(0.5 + level / 2, df)) * sum(variances) ** 0.5
    return mean - half, mean + half


def paired_interval(diff: np.ndarray, level: float = LEVEL) -> Interval | None:
    """The t interval of the mean of paired differences (module docstring).

    ``diff`` is S (one difference per seed) or S×Q (per seed and paired test item). None
    when nothing varies that could be measured: one seed without items.
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[:, None] if d.ndim == 1 else d
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"paired_interval: expected S or S×Q differences, got {d.shape}")
    s, q = d.shape
    if s < 2 and q < 2:
        return None
    terms = [float(d.mean(1).var(ddof=1)) / s] if s > 1 else []
    terms += [float(d.mean(0).var(ddof=1)) / q] if q > 1 else []
    df = s - 1 if s > 1 else q - 1  # the seeds', where there are any: see the module docstring
    low, high = _t_interval(float(d.mean()), terms, df, level)
    kind = "seeds+items" if s > 1 and q > 1 else "seeds" if s > 1 else "items"
    return Interval(float(d.mean()), low, high, s, q if q > 1 else 0, kind, df)
