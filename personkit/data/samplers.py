"""Seeded, DDP-aware batch samplers and the multi-dataset interleaving schedule.

Every sampler is a pure function of ``(seed, epoch, batch index)``: the batches of an epoch are
drawn from ``numpy.random.default_rng([seed, salt, epoch])``. Nothing uses global RNG state, so
a run resumes exactly from a count of consumed batches, and all ranks agree on the global batch
before each takes its shard.

Interleaving (Pfeiffer et al., GCPR 2019, Sec. 4.2; authors' ``RandomSamplerLengthWeighted``):
each mini-batch comes whole from one dataset, drawn at random with probability proportional to
``weight × batches per epoch`` (``proportional``), uniformly (``equal``) or proportional to the
explicit weights alone (``weights``). One schedule epoch is the sum of the datasets' batches per
epoch, so in expectation every dataset is seen once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import count
from typing import Protocol

import numpy as np

_PK_SALT, _RANDOM_SALT, _SCHEDULE_SALT = 1, 2, 3


class EpochBatchSampler(Protocol):
    """A sampler with a fixed number of batches per epoch, each a list of dataset indices."""

    def __len__(self) -> int: ...

    def batch(self, epoch: int, index: int) -> list[int]: ...


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world_size {world_size}")


class PKBatchSampler:
    """P identities × K images per batch (Hermans et al., 2017).

    An epoch visits every identity once: ``floor(num_identities / P)`` batches. Identities with
    fewer than K images are sampled with replacement. Under DDP each rank takes ``P / world``
    of the identities of the global batch, so every shard keeps its P×K structure.

    With ``weights`` (one per identity, e.g. :func:`rarity_weights`), each batch draws its P
    identities at random with probabilities proportional to them (without replacement within
    the batch, with replacement across batches), so an identity with a rare attribute is seen
    more often; an epoch keeps its number of batches.

    Args:
        pids: identity label of every dataset item.
        p, k: identities per (global) batch and images per identity.
        seed: base seed; rank and world size do not change the global batches.
        weights: identity label -> sampling weight (> 0); None: every identity once an epoch.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, weights: Mapping[int, float] | None = None):
        _check_rank(rank, world_size)
        if p < 2 or k < 1:
            raise ValueError(f"PK sampler needs P >= 2 and K >= 1, got P={p}, K={k}")
        if p % world_size:
            raise ValueError(f"PK sampler: P={p} is not divisible by world_size={world_size}")
        pids = np.asarray(pids)
        self.identities = np.unique(pids)
        if len(self.identities) < p:
            raise ValueError(
                f"PK sampler: P={p} identities per batch, but the dataset has only "
                f"{len(self.identities)} identities"
            )
        self.items = {int(q): np.flatnonzero(pids == q) for q in self.identities}
        self.p, self.k, self.seed = p, k, seed
        self.weights = None
        if weights is not None:
            w = np.array([float(weights.get(int(q), 0.0)) for q in self.identities])
            if not np.all(np.isfinite(w)) or (w <= 0).any():
                raise ValueError("PK sampler: every identity needs a finite weight > 0")
            self.weights = w / w.sum()
        self.rank, self.world_size = rank, world_size
        self._cache: tuple[int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return len(self.identities) // self.p

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (identical on every rank)."""
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, _PK_SALT, epoch])
            order = rng.permutation(self.identities)
            batches = []
            for b in range(len(self)):
                batch: list[int] = []
                chosen = order[b * self.p:(b + 1) * self.p] if self.weights is None else (
                    rng.choice(self.identities, self.p, replace=False, p=self.weights))
                for q in chosen:
                    idx = self.items[int(q)]
                    batch += rng.choice(idx, self.k, replace=len(idx) < self.k).tolist()
                batches.append(batch)
            self._cache = (epoch, batches)
        return self._cache[1]

    def batch(self, epoch: int, index: int) -> list[int]:
        """This rank's shard of global batch ``index`` of ``epoch``."""
        batch = self.epoch_batches(epoch)[index]
        per_rank = self.p // self.world_size * self.k
        return batch[self.rank * per_rank:(self.rank + 1) * per_rank]


def rarity_weights(labels: np.ndarray, num_classes: Sequence[int]) -> np.ndarray:
    """One sampling weight per identity from its attribute labels (``I x A`` class indices,
    negative where unknown): the mean over its known attributes of ``1 / (K p_c)``, ``p_c``
    the share of identities with its class ``c`` of that attribute's ``K``. An identity of
    common classes weighs about 1; one with a rare class (a hat worn by 5 % of them) more,
    in proportion to how rare, averaged over its attributes (so no single one dominates)."""
    labels = np.asarray(labels)
    total, count = np.zeros(len(labels)), np.zeros(len(labels))
    for a, k in enumerate(num_classes):
        col = labels[:, a]
        known = col >= 0
        if not known.any():
            continue
        share = np.bincount(col[known], minlength=k)[:k] / known.sum()
        total[known] += 1.0 / (k * share[col[known]])
        count[known] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 1.0)


class RandomBatchSampler:
    """Shuffled batches without replacement, ``drop_last``; under DDP each rank takes a slice."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        _check_rank(rank, world_size)
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} is not divisible by world_size={world_size}")
        if num_items < batch_size:
            raise ValueError(f"batch_size={batch_size} is larger than the dataset ({num_items})")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_items // self.batch_size

    def batch(self, epoch: int, index: int) -> list[int]:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, _RANDOM_SALT, epoch])
            self._cache = (epoch, rng.permutation(self.num_items))
        start = index * self.batch_size
        per_rank = self.batch_size // self.world_size
        start += self.rank * per_rank
        return self._cache[1][start:start + per_rank].tolist()


class InfiniteBatchSampler:
    """Endless batches of an :class:`EpochBatchSampler`, starting after ``start`` consumed ones.

    Use it as a DataLoader ``batch_sampler``; to resume, pass the number of batches the
    trainer consumed (not how many the loader prefetched). With ``with_epoch`` every item is
    an ``(epoch, index)`` pair, so that datasets draw each epoch's augmentation from its own
    seeded stream even inside persistent DataLoader workers.
    """

    def __init__(self, sampler: EpochBatchSampler, start: int = 0, with_epoch: bool = False):
        if len(sampler) == 0:
            raise ValueError("sampler has no batches per epoch")
        self.sampler, self.start, self.with_epoch = sampler, start, with_epoch

    def __iter__(self) -> Iterator[list[int] | list[tuple[int, int]]]:
        n = len(self.sampler)
        for position in count(self.start):
            epoch = position // n
            batch = self.sampler.batch(epoch, position % n)
            yield [(epoch, i) for i in batch] if self.with_epoch else batch


class DatasetSchedule:
    """Which dataset each training step draws its batch from (seeded, identical on all ranks).

    Args:
        batches_per_epoch: dataset name -> batches per epoch of its sampler.
        mode: ``proportional``, ``equal`` or ``weights``.
        weights: dataset name -> weight (default 1).
    """

    MODES = ("proportional", "equal", "weights")

    def __init__(self, batches_per_epoch: Mapping[str, int], mode: str = "proportional",
                 weights: Mapping[str, float] | None = None, seed: int = 0):
        if mode not in self.MODES:
            raise ValueError(f"unknown interleave mode {mode!r}; valid: {self.MODES}")
        if not batches_per_epoch:
            raise ValueError("DatasetSchedule needs at least one dataset")
        self.names = list(batches_per_epoch)
        w = np.array([float((weights or {}).get(n, 1.0)) for n in self.names])
        sizes = np.array([batches_per_epoch[n] for n in self.names], dtype=float)
        raw = {"proportional": w * sizes, "equal": np.ones_like(w), "weights": w}[mode]
        if (raw < 0).any() or raw.sum() <= 0:
            raise ValueError(f"interleave weights must be >= 0 and not all 0, got {raw.tolist()}")
        self.probabilities = raw / raw.sum()
        self.steps_per_epoch = int(sizes.sum())
        self.seed = seed
        self._cache: tuple[int, np.ndarray] | None = None

    def dataset_at(self, step: int) -> str:
        """The dataset name for global training step ``step`` (0-based)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, _SCHEDULE_SALT, epoch])
            draws = rng.choice(len(self.names), size=self.steps_per_epoch, p=self.probabilities)
            self._cache = (epoch, draws)
        return self.names[int(self._cache[1][index])]
