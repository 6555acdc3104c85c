"""DukeMTMC-reID person re-identification with the DukeMTMC-attribute annotation.

Ristani et al., "Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking",
ECCVW 2016; ReID protocol: Zheng et al., ICCV 2017 (https://github.com/layumi/DukeMTMC-reID_evaluation);
attributes: Lin et al., arXiv:1703.07220 (https://github.com/vana77/DukeMTMC-attribute).

Layout (``root`` is ``DukeMTMC-reID/`` or its parent), with the split names of Market-1501::

    bounding_box_train/  16,522 images, 702 ids           split "train"
    query/                2,228 images, 702 ids           split "query"
    bounding_box_test/   17,661 images (the gallery,      split "gallery"
                         incl. 408 distractor ids)
    duke_attribute.mat (or attribute/duke_attribute.mat, or pass ``attribute_file``)

Names ``0005_c2_f0046985.jpg``: pid, camera 1-8, frame (no sequence part, unlike Market).
``camid`` is 0-based. The attribute file holds 702 train and 1,110 test identities with fields
read by name (train and test orders differ).

How ``duke_attribute.mat`` is read (from its README, the official evaluation script and public
loaders; no copy of the file is used in the tests, which write files of the same layout):

* Binary fields are 1/2 -> 0/1 (``top``: 1 = short, 2 = long; ``shoes``: 1 = dark,
  2 = light). A ``0`` (train ``top`` of pids 0370 and 0679, per a public loader) and any other
  out-of-range value become ``IGNORE_INDEX``.
* Colours: the README says 1 = no, 2 = yes, but the official ``evaluate_duke_attribute.m``
  scores a colour prediction as correct when the field equals **1**, so the released values may
  be inverted. By default (``colour_yes=None``) the reader takes, per colour group, the rarer of
  the two values as "yes"; pass ``colour_yes=2`` (or 1) to force it. Groups with no colour (or
  several) marked give ``IGNORE_INDEX``.
"""

from __future__ import annotations

import re
from pathlib import Path

from personkit.data.datasets.market1501 import dataset_root, read_attribute_mat, read_reid_split
from personkit.data.io import first_existing
from personkit.data.records import PersonRecord

#: The 10 Duke attributes as multi-class labels (the authors' head order): name -> classes.
DUKE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "top": ("short", "long"),  # length of upper-body clothing
    "boots": ("no", "yes"),
    "hat": ("no", "yes"),
    "backpack": ("no", "yes"),
    "bag": ("no", "yes"),
    "handbag": ("no", "yes"),
    "shoes": ("dark", "light"),  # colour of shoes
    "upcolor": ("black", "white", "red", "purple", "gray", "blue", "green", "brown"),
    "downcolor": ("black", "white", "red", "gray", "blue", "green", "brown"),
}
DUKE_FIELDS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in DUKE_ATTRIBUTES if not name.endswith("color")},
    "upcolor": tuple("up" + c for c in DUKE_ATTRIBUTES["upcolor"]),
    "downcolor": tuple("down" + c for c in DUKE_ATTRIBUTES["downcolor"]),
}
DUKE_PATTERN = re.compile(r"(\d+)_c(\d)_f(\d+)")


def read_duke(root: str | Path, split: str, attributes: bool = True,
              attribute_file: str | Path | None = None,
              colour_yes: int | None = None) -> list[PersonRecord]:
    """Records of one DukeMTMC-reID split ("train", "query" or "gallery"), sorted by name."""
    root = dataset_root(Path(root), "DukeMTMC-reID")
    attrs = None
    if attributes:
        path = attribute_file or first_existing(
            [root / "duke_attribute.mat", root / "attribute" / "duke_attribute.mat"],
            "DukeMTMC-reID", "the attribute file duke_attribute.mat")
        attrs = read_attribute_mat(Path(path), "duke_attribute", DUKE_ATTRIBUTES, DUKE_FIELDS,
                                   colour_yes=colour_yes)
    return read_reid_split(root, split, "DukeMTMC-reID", DUKE_PATTERN, 8, attrs,
                           len(DUKE_FIELDS))
