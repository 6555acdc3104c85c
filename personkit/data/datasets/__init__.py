"""Native dataset readers: annotation files -> lists of :class:`PersonRecord`.

Every reader is ``reader(root, split, **options) -> list[PersonRecord]`` with explicit
arguments (it never reads a config), checks its folders first, returns records sorted by file
name, and never touches the network. See docs/datasets.md for the layouts.
"""

from __future__ import annotations

from collections.abc import Callable
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

Reader = Callable[..., list[PersonRecord]]

#: Reader name -> function ``(root, split, **options)``.
READERS: dict[str, Reader] = {
    "market1501": read_market1501,
    "duke": read_duke,
    "mpii": read_mpii,
    "lip": read_lip,
    "market_auto": read_market_auto,
}
#: Attribute schema (name -> class names, in record order) of the readers that have one.
ATTRIBUTE_SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "market1501": MARKET_ATTRIBUTES,
    "market_auto": MARKET_ATTRIBUTES,
    "duke": DUKE_ATTRIBUTES,
}


def read_dataset(name: str, root: str | Path, split: str, **options: Any) -> list[PersonRecord]:
    """Records of dataset ``name``; an unknown name is an error listing the valid ones."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(READERS)}")
    return READERS[name](root, split, **options)


__all__ = [
    "ATTRIBUTE_SCHEMAS", "AutoAnnotation", "BadImageError", "DUKE_ATTRIBUTES", "DatasetError",
    "READERS", "read_attribute_mat", "read_dataset", "read_duke", "read_lip",
    "read_lip_pose_csv", "read_market1501", "read_market_auto", "read_mpii",
    "write_market_auto",
]
