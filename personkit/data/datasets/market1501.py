"""Market-1501 person re-identification with the Market-1501 attribute annotation.

Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015
(http://www.liangzheng.org/Project/project_reid.html); attributes: Lin et al., "Improving Person
Re-identification by Attribute and Identity Learning", arXiv:1703.07220
(https://github.com/vana77/Market-1501_Attribute).

Layout (``root`` is ``Market-1501-v15.09.15/`` or its parent)::

    bounding_box_train/  12,936 images, 751 ids           split "train"
    query/                3,368 images, 750 ids           split "query"
    bounding_box_test/   19,732 images (the gallery)      split "gallery"
    market_attribute.mat (or attribute/market_attribute.mat, or pass ``attribute_file``)

Names ``0002_c1s1_000451_03.jpg``: pid, camera 1-6, sequence, frame, box. Gallery pid ``-1`` is
junk and ``0000`` a distractor; both are kept (the ReID metrics drop junk). ``camid`` is
**0-based** (camera 1 -> 0). Images end ``.jpg`` in any case (``.JPG`` too); a name that does
not match the pattern (e.g. ``12-3_c1s1_000001_00.jpg``) is an error naming the file. Other
files in the folders (e.g. ``Thumbs.db``) are ignored.

Attributes are per identity (train: 751 ids, test: 750, disjoint) and are copied to every image
of the identity, as the 12 multi-class labels of ``MARKET_ATTRIBUTES``: 1/2 fields -> 0/1, age
1-4 -> 0-3, and each colour group -> the index of its field that is 2. A group with no (or
more than one) colour marked, any out-of-range value, and identities the file lacks (junk,
distractors) give ``IGNORE_INDEX``. Fields are read by name: train and test orders differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from personkit.data.constants import IGNORE_INDEX, MARKET_ATTRIBUTES
from personkit.data.io import (
    DatasetError,
    first_existing,
    load_mat,
    mat_field,
    mat_items,
    require_dir,
)
from personkit.data.records import PersonRecord

#: Reader split name -> image folder (Market-1501 and DukeMTMC-reID).
REID_SPLITS: dict[str, str] = {
    "train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test",
}
MARKET_PATTERN = re.compile(r"(-1|\d+)_c(\d)s(\d)_(\d+)_(\d+)")  # pid -1 = junk
#: Attribute -> .mat fields: one field (value - 1 is the class) or a one-hot colour group.
MARKET_FIELDS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in MARKET_ATTRIBUTES if not name.endswith("color")},
    "upcolor": tuple("up" + c for c in MARKET_ATTRIBUTES["upcolor"]),
    "downcolor": tuple("down" + c for c in MARKET_ATTRIBUTES["downcolor"]),
}


def read_market1501(root: str | Path, split: str, attributes: bool = True,
                    attribute_file: str | Path | None = None) -> list[PersonRecord]:
    """Records of one Market-1501 split ("train", "query" or "gallery"), sorted by file name."""
    root = dataset_root(Path(root), "Market-1501-v15.09.15")
    attrs = None
    if attributes:
        path = attribute_file or first_existing(
            [root / "market_attribute.mat", root / "attribute" / "market_attribute.mat"],
            "Market-1501", "the attribute file market_attribute.mat")
        attrs = read_attribute_mat(Path(path), "market_attribute", MARKET_ATTRIBUTES,
                                   MARKET_FIELDS, colour_yes=2)
    return read_reid_split(root, split, "Market-1501", MARKET_PATTERN, 6, attrs,
                           len(MARKET_FIELDS))


def dataset_root(root: Path, subdir: str) -> Path:
    """``root/subdir`` if that folder exists (``root`` is its parent), else ``root``."""
    return root / subdir if (root / subdir).is_dir() else root


def read_reid_split(root: Path, split: str, dataset: str, pattern: re.Pattern, num_cams: int,
                    attributes: Mapping[int, np.ndarray] | None,
                    num_attributes: int) -> list[PersonRecord]:
    """Parse ``pid``/``camid`` from the ``*.jpg`` (any case) names of one split folder."""
    if split not in REID_SPLITS:
        raise ValueError(f"{dataset}: unknown split {split!r}; valid: {sorted(REID_SPLITS)}")
    folder = require_dir(root / REID_SPLITS[split], dataset)
    unknown = np.full(num_attributes, IGNORE_INDEX, dtype=np.int64)
    unknown.setflags(write=False)
    records = []
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg" and p.is_file())
    for path in images:
        match = pattern.fullmatch(path.stem)
        if match is None:
            raise DatasetError(f"{dataset}: malformed file name {path} "
                               f"(expected the pattern {pattern.pattern}.jpg)")
        pid, cam = int(match.group(1)), int(match.group(2))
        if not 1 <= cam <= num_cams:
            raise DatasetError(f"{dataset}: camera {cam} out of 1..{num_cams} in {path}")
        attrs = None if attributes is None else attributes.get(pid, unknown)
        records.append(PersonRecord(image_path=path, pid=pid, camid=cam - 1, attributes=attrs))
    if not records:
        raise DatasetError(f"{dataset}: no *.jpg images in {folder}")
    return records


def read_attribute_mat(path: Path, struct: str, schema: Mapping[str, Sequence[str]],
                       fields: Mapping[str, Sequence[str]],
                       colour_yes: int | None = 2) -> dict[int, np.ndarray]:
    """Per-identity labels from a Lin et al. attribute file (both its ``train`` and ``test``).

    Args:
        path: ``market_attribute.mat`` or ``duke_attribute.mat``.
        struct: name of the top-level struct variable.
        schema: attribute -> class names, in output order (e.g. ``MARKET_ATTRIBUTES``).
        fields: attribute -> source field(s) (see ``MARKET_FIELDS``).
        colour_yes: the value that marks a colour as present, or None to take, per group and
            part, the rarer of 1 and 2 (a one-hot group has one "yes" among many "no").

    Returns:
        pid -> read-only int64 vector of class indices, ``IGNORE_INDEX`` where unknown.
    """
    mat = load_mat(path, struct)
    if struct not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable {struct!r} (found {names})")
    table: dict[int, np.ndarray] = {}
    for part in ("train", "test"):
        node = mat_field(mat[struct], part)
        if node is None:
            raise DatasetError(f"{path}: {struct} has no field {part!r}")
        ids = _identities(node, f"{path}:{part}")
        columns = [_encode(_fields(node, fields[name], len(ids), f"{path}:{part}"),
                           len(classes), colour_yes) for name, classes in schema.items()]
        for row, pid in enumerate(ids):
            labels = np.array([c[row] for c in columns], dtype=np.int64)
            labels.setflags(write=False)
            table.setdefault(pid, labels)
    return table


def _identities(node: object, where: str) -> list[int]:
    """The pids of the ``image_index`` cell (4-character strings such as ``'0002'``)."""
    try:
        return [int(x) for x in mat_items(mat_field(node, "image_index"))]
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where}: image_index must hold pid strings ({e})") from e


def _fields(node: object, names: Sequence[str], n: int, where: str) -> np.ndarray:
    """The named per-identity fields as an ``n × len(names)`` integer array."""
    out = np.zeros((n, len(names)), dtype=np.int64)
    for j, name in enumerate(names):
        field = mat_field(node, name)
        values = np.atleast_1d(np.asarray(field))
        if field is None or values.shape != (n,) or values.dtype.kind not in "iuf":
            raise DatasetError(f"{where}: expected field {name!r} with {n} values "
                               f"(one per image_index entry)")
        out[:, j] = values
    return out


def _encode(values: np.ndarray, num_classes: int, colour_yes: int | None) -> np.ndarray:
    """Class index per identity: ``value - 1`` for one field, the "yes" index for a group."""
    if values.shape[1] == 1:
        v = values[:, 0] - 1
        return np.where((v >= 0) & (v < num_classes), v, IGNORE_INDEX)
    yes = colour_yes
    if yes is None:
        yes = 2 if (values == 2).sum() <= (values == 1).sum() else 1
    hits = values == yes
    return np.where(hits.sum(1) == 1, hits.argmax(1), IGNORE_INDEX)
