"""Checks that a training setup can work, run before the model is built or a step is taken.

Each failure is a ``ValueError`` naming the dataset or head and what is missing, so
``personkit train`` stops with one clear line instead of failing hours later. The sampler
checks (a PK batch asking for more identities than a dataset has, batch sizes that do not
split over the ranks) live in :mod:`personkit.data.samplers` and run when the samplers are
built, before these.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from torch.utils.data import Dataset

from personkit.data.records import TASK_LABELS

#: Heads whose parameters another task's labels also train (the ReID embedding is the pooled
#: feature the ID classifier is trained on).
_ALSO_TRAINED_BY = {"reid": ("id",)}


def label_keys(dataset: Dataset) -> tuple[str, ...]:
    """The sample keys ``dataset`` provides: its declared ``keys``, else those of item 0."""
    declared = getattr(dataset, "keys", None)
    if isinstance(declared, (tuple, list)):
        return tuple(declared)
    return tuple(dataset[0].keys())


def check_labels(name: str, dataset: Dataset, tasks: Sequence[str]) -> None:
    """Every task of dataset ``name`` has its labels (``TASK_LABELS``) in the samples."""
    keys = set(label_keys(dataset))
    for task in tasks:
        missing = [k for k in TASK_LABELS[task] if k not in keys]
        if missing:
            raise ValueError(
                f"dataset {name!r}: task {task!r} needs the labels {missing}, which this "
                f"dataset does not provide (it has {sorted(keys)}); remove {task!r} from its "
                f"tasks or use a dataset with these labels")


def check_heads_trained(heads: Sequence[str], tasks: Mapping[str, Sequence[str]],
                        keep_untrained: bool = False) -> None:
    """Every model head is trained by at least one dataset's tasks.

    Args:
        heads: the model's enabled heads.
        tasks: training dataset name -> its tasks.
        keep_untrained: warn instead of failing (``model.keep_untrained_heads``: e.g. a pose
            head kept from ``model.init_from`` while fine-tuning ReID, Table 7).
    """
    trained = {t for ts in tasks.values() for t in ts}
    for head in heads:
        if head in trained or any(t in trained for t in _ALSO_TRAINED_BY.get(head, ())):
            continue
        listing = "; ".join(f"{n}: {list(ts)}" for n, ts in tasks.items()) or "none"
        if keep_untrained:
            warnings.warn(f"model head {head!r} has no training labels (datasets and tasks: "
                          f"{listing}); it keeps its initial weights (model.keep_untrained_heads)",
                          stacklevel=2)
            continue
        raise ValueError(
            f"model head {head!r} has no training labels: no data.train dataset lists it in "
            f"its tasks (datasets and tasks: {listing}); add {head!r} to the tasks of a "
            f"dataset that has its labels, remove it from model.heads, or keep it untrained "
            f"(e.g. initialised by model.init_from) with model.keep_untrained_heads: true")


def check_id_classes(name: str, dataset: Dataset, num_ids: int) -> None:
    """The ID classifier has a class for every identity label of dataset ``name``."""
    pids = getattr(dataset, "pids", None)
    if pids is None or len(pids) == 0:
        return
    needed = int(max(pids)) + 1
    if needed > num_ids:
        count = len(set(int(p) for p in pids))
        raise ValueError(
            f"dataset {name!r} has {count} identities (ID labels up to {needed - 1}) but the ID "
            f"classifier has model.num_ids={num_ids}; set model.num_ids to at least {needed}")


def check_training_data(heads: Sequence[str],
                        datasets: Mapping[str, tuple[Dataset, Sequence[str]]],
                        num_ids: int | None = None, keep_untrained: bool = False) -> None:
    """All pre-flight label checks: ``datasets`` maps a name to (dataset, tasks);
    ``num_ids`` (the ID classifier's classes) is checked against datasets with the id task."""
    for name, (dataset, tasks) in datasets.items():
        check_labels(name, dataset, tasks)
        if num_ids is not None and "id" in tasks:
            check_id_classes(name, dataset, num_ids)
    check_heads_trained(heads, {name: tasks for name, (_, tasks) in datasets.items()},
                        keep_untrained)
