"""Native dataset readers: annotation files -> lists of :class:`PersonRecord`.

Every reader is ``reader(root, split, **options) -> list[PersonRecord]`` with explicit
arguments (it never reads a config), checks its folders first, returns records sorted by file
name, and never touches the network. See docs/datasets.md for the layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personkit.data.constants import MARKET_ATTRIBUTES
from personkit.data.datasets.duke import DUKE_ATTRIBUTES, read_duke
from personkit.data.datasets.lip import read_lip, read_lip_pose_csv
from personkit.data.datasets.market1501 import read_attribute_mat, read_market1501
from personkit.data.datasets.market_auto import (
    AutoAnnotation,
    read_market_auto,
    write_market_auto,
)
from personkit.data.datasets.mpii import read_mpii
from personkit.data.io import BadImageError, DatasetError
from personkit.data.records import PersonRecord
from personkit.data.transforms import AffineAugment, lip_transform, mpii_transform, reid_transform

Reader = Callable[..., list[PersonRecord]]
Transform = Callable[[bool, tuple[int, int]], AffineAugment]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything personkit knows about one dataset type; adding a dataset is one entry.

    Args:
        reader: ``(root, split, **options) -> list[PersonRecord]``.
        transform: the default augmentation preset ``(train, output_size) -> AffineAugment``.
        attributes: attribute name -> class names, in record order (empty: no attributes).
        protocol: how its evaluation entries are scored: ``reid`` (the query and gallery
            splits: Market-1501 ReID and attribute accuracy), ``mpii`` or ``lip`` (one split:
            PCKh with that dataset's upper-body joints, and part mIoU where labelled).
    """

    reader: Reader
    transform: Transform
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    protocol: str = "mpii"


#: Dataset type (``data.train[*].type``) -> its spec.
DATASETS: dict[str, DatasetSpec] = {
    "market1501": DatasetSpec(read_market1501, reid_transform, MARKET_ATTRIBUTES, "reid"),
    "duke": DatasetSpec(read_duke, reid_transform, DUKE_ATTRIBUTES, "reid"),
    "mpii": DatasetSpec(read_mpii, mpii_transform, protocol="mpii"),
    "lip": DatasetSpec(read_lip, lip_transform, protocol="lip"),
    "market_auto": DatasetSpec(read_market_auto, reid_transform, MARKET_ATTRIBUTES, "mpii"),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset type ``name``; an unknown name is an error listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    return DATASETS[name]


def read_dataset(name: str, root: str | Path, split: str, **options: Any) -> list[PersonRecord]:
    """Records of dataset ``name``; an unknown name is an error listing the valid ones."""
    return dataset_spec(name).reader(root, split, **options)


__all__ = [
    "DATASETS", "AutoAnnotation", "BadImageError", "DUKE_ATTRIBUTES", "DatasetError",
    "DatasetSpec", "dataset_spec", "read_attribute_mat", "read_dataset", "read_duke", "read_lip",
    "read_lip_pose_csv", "read_market1501", "read_market_auto", "read_mpii",
    "write_market_auto",
]
