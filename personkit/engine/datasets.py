"""The ``data`` section of a config -> datasets and samplers: native readers, decoding and
transforms, PK or random batch samplers sharded over DDP ranks, and the checks that run before
anything is trained (sampler sizes, labels per task, a dataset for every head)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from personkit.config import Config, DatasetConfig
from personkit.data.dataset import PersonDataset
from personkit.data.datasets import DATASETS, dataset_spec
from personkit.data.fake import FakePersonDataset
from personkit.data.fractions import subset_records
from personkit.data.io import wrap_error
from personkit.data.records import PersonRecord
from personkit.data.samplers import PKBatchSampler, RandomBatchSampler, rarity_weights
from personkit.engine.preflight import check_training_data
from personkit.engine.trainer import TrainSource


def _fake_dataset(d: DatasetConfig, cfg: Config, seed: int) -> Dataset:
    return FakePersonDataset(
        input_size=d.input_size, seg_classes=cfg.model.seg_classes,
        attribute_names=tuple(cfg.model.attributes), mean=cfg.model.mean, std=cfg.model.std,
        seed=seed, **d.options,
    )


def dataset_dir(d: DatasetConfig, data_root: str | Path | None = None) -> Path:
    """The folder of dataset entry ``d``: ``d.root``, relative to ``data_root`` (``data.root``)
    when given and ``d.root`` is relative."""
    root = Path(d.root)
    return root if data_root is None or root.is_absolute() else Path(data_root) / root


def read_records(d: DatasetConfig, split: str | None = None,
                 data_root: str | Path | None = None) -> list[PersonRecord]:
    """Records of one dataset entry through its native reader."""
    try:
        return dataset_spec(d.type).reader(dataset_dir(d, data_root), split or d.split,
                                           **d.options)
    except (ValueError, FileNotFoundError) as e:
        raise wrap_error(e, f"dataset {d.name!r}") from e


def person_dataset(d: DatasetConfig, records: list[PersonRecord], cfg: Config, train: bool,
                   seed: int = 0) -> PersonDataset:
    """Decoding, the dataset's transform preset and normalisation for ``records``."""
    spec = dataset_spec(d.type)
    transform = spec.transform(train and d.augment, d.input_size)
    names = tuple(cfg.model.attributes) if "attributes" in d.tasks else None
    if names is not None and tuple(spec.attributes) != names:
        raise ValueError(f"dataset {d.name!r}: its attributes {list(spec.attributes)} do not "
                         f"match model.attributes {list(names)}")
    tasks = d.tasks if train else ()
    return PersonDataset(records, transform, tasks, cfg.model.mean, cfg.model.std,
                         pid_relabel=train, attribute_names=names, merge_parts=d.merge_parts,
                         on_bad_image=cfg.data.on_bad_image, seed=seed)


def _reader_dataset(d: DatasetConfig, cfg: Config, seed: int) -> Dataset:
    records = read_records(d, None, cfg.data.root or None)
    records = subset_records(records, d.fraction, d.fraction_seed, d.fraction_unit)
    dataset = person_dataset(d, records, cfg, train=True, seed=seed)
    if "id" in d.tasks and not _id_size_from_data(cfg) and dataset.num_ids > cfg.model.num_ids:
        raise ValueError(f"dataset {d.name!r} has {dataset.num_ids} identities but the ID "
                         f"classifier has model.num_ids={cfg.model.num_ids}")
    return dataset


def build_dataset(d: DatasetConfig, cfg: Config, seed: int = 0) -> Dataset:
    """The torch training dataset for one ``data.train`` entry."""
    if d.type != "fake" and d.type not in DATASETS:
        raise ValueError(f"dataset {d.name!r}: unknown type {d.type!r}; valid: "
                         f"{sorted(['fake', *DATASETS])}")
    if d.type == "fake" and d.fraction != 1.0:
        raise ValueError(f"dataset {d.name!r}: fraction needs a dataset read from disk, not "
                         f"type 'fake'")
    try:
        return (_fake_dataset if d.type == "fake" else _reader_dataset)(d, cfg, seed)
    except ValueError as e:
        if f"dataset {d.name!r}" in str(e):
            raise
        raise wrap_error(e, f"dataset {d.name!r}") from e


def build_sampler(d: DatasetConfig, dataset: Dataset, seed: int, rank: int = 0,
                  world_size: int = 1) -> PKBatchSampler | RandomBatchSampler:
    """The batch sampler of one training dataset (PK for triplet batches, else random)."""
    try:
        if d.sampler == "pk":
            pids = getattr(dataset, "pids", None)
            if pids is None:
                raise ValueError("the PK sampler needs a dataset with identities (pids)")
            weights = identity_weights(dataset, pids) if d.pk_balance == "attributes" else None
            return PKBatchSampler(pids, d.pk_p, d.pk_k, seed, rank, world_size, weights)
        return RandomBatchSampler(len(dataset), d.batch_size, seed, rank, world_size)
    except ValueError as e:
        raise ValueError(f"dataset {d.name!r}: {e}") from e


def identity_weights(dataset: Dataset, pids: Sequence[int]) -> dict[int, float]:
    """Each identity's :func:`~personkit.data.samplers.rarity_weights` from its records'
    attribute labels (``data.train[].pk_balance: attributes``).

    Raises:
        ValueError: the dataset has no attribute labels.
    """
    first: dict[int, Any] = {}
    for pid, r in zip(pids, getattr(dataset, "records", ()), strict=False):
        if r.attributes is not None:
            first.setdefault(int(pid), r.attributes)
    if not first:
        raise ValueError("pk_balance: attributes needs attribute labels in the dataset")
    labels = np.stack(list(first.values()))
    counts = [int(max(labels[:, a].max(), 0)) + 1 for a in range(labels.shape[1])]
    return dict(zip(first, rarity_weights(labels, counts).tolist(), strict=True))


def build_sources(cfg: Config, rank: int = 0, world_size: int = 1) -> dict[str, TrainSource]:
    """The training datasets with this rank's samplers, checked before anything is trained:
    sampler sizes (PK identities, batch sizes over ranks), each task's labels and a training
    dataset for every model head; a ``ValueError`` names what is wrong."""
    if not cfg.data.train:
        raise ValueError("the config has no training datasets (data.train is empty)")
    sources = {}
    for i, d in enumerate(cfg.data.train):
        dataset = build_dataset(d, cfg, seed=cfg.train.seed + i)
        sampler = build_sampler(d, dataset, cfg.train.seed + i, rank, world_size)
        sources[d.name] = TrainSource(dataset, sampler, d.tasks, cfg.data.num_workers)
    check_training_data(cfg.model.heads, {n: (s.dataset, s.tasks) for n, s in sources.items()},
                        num_ids=cfg.model.num_ids if "id" in cfg.model.heads else None,
                        keep_untrained=cfg.model.keep_untrained_heads)
    return sources


def _id_size_from_data(cfg: Config) -> bool:
    """The ID classifier is sized from the data: ``model.num_ids`` is null, or an ``id``
    dataset trains on a fraction of its identities."""
    return cfg.model.num_ids is None or any(
        "id" in d.tasks and d.fraction != 1.0 for d in cfg.data.train)


def size_id_classifier(cfg: Config, sources: dict[str, TrainSource]) -> Config:
    """``cfg`` with ``model.num_ids`` set to the identities of the ``id`` training data
    (the most of any such dataset: each numbers its identities from 0) when
    :func:`_id_size_from_data`; unchanged otherwise."""
    if not _id_size_from_data(cfg) or "id" not in cfg.model.heads:
        return cfg
    counts = [getattr(s.dataset, "num_ids", 0) for s in sources.values() if "id" in s.tasks]
    if not counts or max(counts) <= 0:
        raise ValueError("model.num_ids is null but no data.train dataset with the 'id' task "
                         "has identities to size the ID classifier from")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_ids=max(counts)))
