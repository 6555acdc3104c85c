"""Seeded samplers: PK structure, DDP shards, interleaving frequencies."""

import numpy as np
import pytest

from personkit.data.samplers import (
    DatasetSchedule,
    InfiniteBatchSampler,
    PKBatchSampler,
    RandomBatchSampler,
)

PIDS = [q for q in range(10) for _ in range(1 + q % 5)]  # 1..5 images per identity


def test_pk_batches_have_p_identities_times_k_images():
    sampler = PKBatchSampler(PIDS, p=4, k=3, seed=1)
    assert len(sampler) == 10 // 4
    for batch in sampler.epoch_batches(0):
        ids = [PIDS[i] for i in batch]
        assert len(batch) == 12 and len(set(ids)) == 4
        assert all(ids.count(q) == 3 for q in set(ids))
    assert sampler.epoch_batches(0) == PKBatchSampler(PIDS, 4, 3, seed=1).epoch_batches(0)
    assert sampler.epoch_batches(0) != sampler.epoch_batches(1)


def test_pk_rank_shards_keep_structure_and_cover_global_batch():
    full = PKBatchSampler(PIDS, p=4, k=2, seed=3).batch(0, 1)
    shards = [PKBatchSampler(PIDS, 4, 2, seed=3, rank=r, world_size=2).batch(0, 1) for r in (0, 1)]
    assert shards[0] + shards[1] == full
    for shard in shards:
        ids = [PIDS[i] for i in shard]
        assert len(set(ids)) == 2 and all(ids.count(q) == 2 for q in set(ids))


def test_pk_rejects_impossible_settings():
    with pytest.raises(ValueError, match="only 10 identities"):
        PKBatchSampler(PIDS, p=18, k=4)
    with pytest.raises(ValueError, match="not divisible"):
        PKBatchSampler(PIDS, p=5, k=4, world_size=2)


def test_random_batches_cover_epoch_without_repeats_and_shard():
    sampler = RandomBatchSampler(23, 4, seed=0)
    seen = [i for b in range(len(sampler)) for i in sampler.batch(0, b)]
    assert len(sampler) == 5 and len(set(seen)) == 20
    halves = [RandomBatchSampler(23, 4, 0, r, 2).batch(2, 3) for r in (0, 1)]
    assert halves[0] + halves[1] == sampler.batch(2, 3)


def test_infinite_sampler_resumes_at_consumed_position():
    sampler = RandomBatchSampler(10, 3, seed=0)
    it = iter(InfiniteBatchSampler(sampler))
    stream = [next(it) for _ in range(8)]
    resumed = iter(InfiniteBatchSampler(sampler, start=5))
    assert [next(resumed) for _ in range(3)] == stream[5:]
    tagged = iter(InfiniteBatchSampler(sampler, start=2, with_epoch=True))
    assert next(tagged) == [(0, i) for i in stream[2]]
    assert next(tagged) == [(1, i) for i in stream[3]]  # 3 batches per epoch


@pytest.mark.parametrize("mode", ["proportional", "equal", "weights"])
def test_schedule_frequencies_match_proportions(mode):
    sizes = {"market": 41, "mpii": 100, "lip": 59}
    weights = {"market": 3.0, "mpii": 1.0, "lip": 1.0}
    schedule = DatasetSchedule(sizes, mode, weights, seed=7)
    raw = {"proportional": {k: weights[k] * v for k, v in sizes.items()},
           "equal": dict.fromkeys(sizes, 1.0), "weights": weights}[mode]
    expected = {k: v / sum(raw.values()) for k, v in raw.items()}
    n = 20_000
    draws = [schedule.dataset_at(s) for s in range(n)]
    for name, p in expected.items():
        freq = draws.count(name) / n
        # Binomial standard error; 5 sigma keeps the false-failure rate below 1e-6.
        assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n), (name, freq, p)
    again = DatasetSchedule(sizes, mode, weights, seed=7)
    assert [again.dataset_at(s) for s in range(n)] == draws
    other = DatasetSchedule(sizes, mode, weights, seed=8)
    assert [other.dataset_at(s) for s in range(200)] != draws[:200]


def test_rarity_weights_favour_identities_with_rare_attribute_classes():
    from personkit.data.samplers import rarity_weights

    # attribute 0: 1 of 10 identities wears a hat; attribute 1: 5 / 5; -100 unknown
    labels = np.array([[1, 0]] + [[0, 0]] * 4 + [[0, 1]] * 5)
    labels[9, 1] = -100
    w = rarity_weights(labels, [2, 2])
    assert w[0] == pytest.approx((1 / (2 * 0.1) + 1 / (2 * 5 / 9)) / 2)
    assert w[1] == pytest.approx((1 / (2 * 0.9) + 1 / (2 * 5 / 9)) / 2)
    assert w[9] == pytest.approx(1 / (2 * 0.9))  # its unknown label does not count
    assert w[0] > 2 * w[1]


def test_weighted_pk_batches_see_rare_identities_more_and_stay_seeded():
    from personkit.data.samplers import PKBatchSampler

    pids = np.repeat(np.arange(40), 3)
    weights = {q: (10.0 if q < 2 else 1.0) for q in range(40)}
    s = PKBatchSampler(pids, 4, 2, seed=3, weights=weights)
    assert len(s) == 10  # an epoch keeps its number of batches
    seen = np.concatenate([pids[s.batch(e, b)] for e in range(20) for b in range(len(s))])
    rare = np.isin(seen, [0, 1]).mean()
    assert rare > 4 * 2 / 40  # drawn far more often than an identity's fair share
    for b in range(len(s)):
        batch = pids[s.batch(5, b)]
        assert len(set(batch)) == 4 and all((batch == q).sum() == 2 for q in set(batch))
    again = PKBatchSampler(pids, 4, 2, seed=3, weights=weights)
    assert again.batch(7, 3) == s.batch(7, 3)
    with pytest.raises(ValueError, match="finite weight > 0"):
        PKBatchSampler(pids, 4, 2, weights={q: 0.0 for q in range(40)})
