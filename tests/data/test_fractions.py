"""Training-data fractions (Fig. 5): a seeded subset of identities, the same in every run and
on every rank, with the ID classifier sized to the identities kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from personkit.config import ConfigError, config_from_dict
from personkit.data.fractions import keep_count, subset_records
from personkit.data.records import PersonRecord
from personkit.engine.build import build_trainer
from personkit.engine.datasets import build_sources


def _cfg(world, fraction, **extra):
    return config_from_dict({
        "model": {"backbone": {"name": "resnet10t", "norm": "group"},
                  "heads": ["reid", "id"], "num_ids": 120, "input_size": [64, 32]},
        "data": {"root": str(world), "num_workers": 0, "train": [
            {"name": "market", "type": "market1501", "root": "Market-1501-v15.09.15",
             "tasks": ["reid", "id"], "sampler": "pk", "pk_p": 4, "pk_k": 2,
             "input_size": [64, 32], "fraction": fraction, **extra}]},
        "train": {"iterations": 1, "device": "cpu", "checkpoint_every": 0},
    })


def _kept_pids(world, fraction, rank=0, world_size=1, **extra):
    dataset = build_sources(_cfg(world, fraction, **extra), rank, world_size)["market"].dataset
    return {r.pid for r in dataset.records}, dataset.num_ids


def test_fraction_keeps_a_seeded_nested_subset_of_identities(tiny_world_dir):
    full, n_full = _kept_pids(tiny_world_dir, 1.0)
    quarter, n_quarter = _kept_pids(tiny_world_dir, 0.25)
    half, _ = _kept_pids(tiny_world_dir, 0.5)
    assert n_full == len(full) == 120
    assert n_quarter == len(quarter) == 30 and quarter < half < full
    assert _kept_pids(tiny_world_dir, 0.25) == (quarter, 30)  # the same in another run
    assert _kept_pids(tiny_world_dir, 0.25, rank=1, world_size=2) == (quarter, 30)  # and rank
    other, _ = _kept_pids(tiny_world_dir, 0.25, fraction_seed=1)
    assert len(other) == 30 and other != quarter


def test_id_classifier_is_sized_to_the_kept_identities(tiny_world_dir, tmp_path):
    trainer = build_trainer(_cfg(tiny_world_dir, 0.25), tmp_path, progress=False)
    assert trainer.model.heads["id"].fc.out_features == 30
    assert trainer.model.meta.num_ids == 30
    assert trainer.extra_state["config"]["model"]["num_ids"] == 30
    assert max(int(p) for p in trainer.sources["market"].dataset.pids) == 29


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_fraction_out_of_range_names_the_key(tiny_world_dir, fraction):
    message = r"'data\.train\.0\.fraction' must be a finite number > 0 and <= 1"
    with pytest.raises(ConfigError, match=message):
        _cfg(tiny_world_dir, fraction)


def test_subset_of_images_and_of_records_without_identities():
    records = [PersonRecord(image_path=Path(f"{i}.jpg")) for i in range(10)]
    kept = subset_records(records, 0.3, seed=0, unit="images")
    assert len(kept) == 3 and kept == sorted(kept, key=lambda r: int(r.image_path.stem))
    with pytest.raises(ValueError, match="fraction_unit: images"):
        subset_records(records, 0.3)
    assert keep_count(0.001, 10) == 1 and keep_count(1.0, 7) == 7
