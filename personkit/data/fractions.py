"""Deterministic training-data fractions (Fig. 5 of Pfeiffer et al., GCPR 2019: ReID accuracy
against the share of the Market training identities used).

The kept identities are the first ``round(fraction * n)`` (at least one) of a permutation of
the sorted identities drawn from ``seed`` alone: the subset is the same in every run and on
every DDP rank, and a smaller fraction's identities are a subset of a larger one's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personkit.data.records import PersonRecord


def keep_count(fraction: float, n: int) -> int:
    """How many of ``n`` groups a ``fraction`` in (0, 1] keeps (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return min(n, max(1, round(fraction * n)))


def subset_records(records: Sequence[PersonRecord], fraction: float, seed: int = 0,
                   unit: str = "ids") -> list[PersonRecord]:
    """The records of a seeded ``fraction`` of the identities (``unit="ids"``: every image of a
    kept identity) or of the images (``"images"``), in their original order."""
    if fraction == 1.0:
        return list(records)
    if unit == "ids":
        if any(r.pid is None for r in records):
            raise ValueError("a fraction of identities needs records with identities (pid); "
                             "this dataset has none (use fraction_unit: images)")
        groups = sorted({int(r.pid) for r in records})  # type: ignore[arg-type]
        keys = [int(r.pid) for r in records]  # type: ignore[arg-type]
    elif unit == "images":
        groups = list(range(len(records)))
        keys = groups
    else:
        raise ValueError(f"unknown fraction unit {unit!r}; valid: ids, images")
    order = np.random.default_rng(seed).permutation(len(groups))
    kept = {groups[i] for i in order[:keep_count(fraction, len(groups))]}
    return [r for r, k in zip(records, keys, strict=True) if k in kept]
