"""Paired differences between study rows and their uncertainty (docs/study.md, "Statistics").

A difference row − baseline pairs the seeds both rows ran. Where the metric is a mean over
test items that both rows scored in the same order (ReID: the per-query AP and rank-1 of the
same query set), the items pair too, and :func:`paired_bootstrap` resamples both levels:
seeds (the training randomness) and items (the finite test set). Otherwise it resamples seeds
alone. The interval is the percentile interval of the resampled mean difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Replicates of every bootstrap: the percentile interval's own Monte-Carlo error is then
#: about 0.02 of its width.
N_BOOT = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A paired difference's mean and bootstrap interval (fractions, like the metrics)."""

    mean: float
    low: float
    high: float
    seeds: int
    items: int  # paired test items per seed (0: seeds only)

    def side(self) -> int:
        """+1 / -1 when the interval lies above / below zero, 0 when it contains it."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def text(self) -> str:
        level = f"{round(100 * LEVEL)} % CI"
        what = f"seeds × {self.items} items" if self.items else "seeds"
        return f"{level} [{100 * self.low:+.1f}, {100 * self.high:+.1f}] ({what})"


def paired_bootstrap(diff: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL,
                     seed: int = 0) -> Interval:
    """Percentile interval of the mean of paired differences.

    ``diff`` is S (one difference per seed) or S×Q (per seed and test item, the same items in
    the same order for every seed). Each replicate draws S seeds with replacement and, for
    S×Q, Q items with replacement (the same items for every drawn seed: one test set), and
    takes the mean over drawn seeds of the mean over drawn items. Seeded: the same numbers
    give the same interval.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"paired_bootstrap: expected S or S×Q differences, got {d.shape}")
    s, q = d.shape
    rng = np.random.default_rng(seed)
    item_w = rng.multinomial(q, np.full(q, 1 / q), size=n_boot) / q if q > 1 else np.ones(
        (n_boot, 1))
    seed_w = rng.multinomial(s, np.full(s, 1 / s), size=n_boot) / s
    per_seed = d @ item_w.T  # S × B: each seed's mean over the drawn items
    stats = (seed_w * per_seed.T).sum(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(float(d.mean()), float(low), float(high), s, q if q > 1 else 0)
