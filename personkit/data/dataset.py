"""The torch Dataset that turns :class:`PersonRecord` lists into training/evaluation samples.

A sample is the dict documented in :mod:`personkit.data.records`, with the keys the records
have and the tasks need: always ``image``, ``index`` and ``affine``; ``pid``/``camid`` when
every record has them; ``attributes`` for the attribute task; ``joints``/``joints_valid`` for
pose; ``parts`` for segmentation. A record without a requested label gets an "unknown" label
(``IGNORE_INDEX`` attributes, invalid joints, an all-``SEG_IGNORE`` mask).

Augmentation is reproducible: sample ``i`` of epoch ``e`` uses
``numpy.random.default_rng((seed, e, i))``, independent of DataLoader workers. Call
:meth:`PersonDataset.set_epoch` before creating the epoch's iterator (workers copy the dataset
when the iterator starts), or, with ``persistent_workers``, index with ``(epoch, index)`` pairs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from personkit.data.constants import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LIP_CLASSES,
    NUM_JOINTS,
    SEG_IGNORE,
)
from personkit.data.io import BadImageError, DatasetError, read_image, read_mask
from personkit.data.records import TASK_LABELS, PersonRecord
from personkit.data.transforms import AffineAugment, merge_parts

_NEEDS = {"pid": "pid", "attributes": "attributes", "joints": "joints", "parts": "mask_path"}


class PersonDataset(Dataset):
    """Decodes, augments and normalises records into sample dicts.

    Args:
        records: what a reader returned.
        transform: the geometric transform (e.g. ``mpii_transform(train=True)``).
        tasks: tasks whose labels to return (``TASK_LABELS`` keys).
        mean, std: RGB normalisation in [0, 1] units (the model's preprocessing).
        pid_relabel: map pids to 0..N-1 in sorted order (training sets).
        attribute_names: names of the record attribute vector, checked against its length.
        merge_parts: map LIP's 20 part classes to the 5 merged classes.
        on_bad_image: ``"raise"`` a :class:`BadImageError` naming the file, or ``"skip"``: warn,
            count it in ``num_bad_images`` (per process) and return the next valid index; every
            sample then carries ``bad_skipped``, the number of records passed over to reach it
            (the trainer logs it). :meth:`dropping_bad` makes the evaluation variant, which
            returns a marker instead of a neighbour, so a skipped record is left out rather
            than replaced (a neighbour scored twice would change mAP).
        seed: base seed of the per-sample generators.

    Part masks are checked on every read (:func:`check_mask`): the size of the image, and LIP
    class ids (``0..19``) or ``SEG_IGNORE``.
    """

    def __init__(self, records: Sequence[PersonRecord], transform: AffineAugment,
                 tasks: Sequence[str] = (), mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, pid_relabel: bool = False,
                 attribute_names: Sequence[str] | None = None, merge_parts: bool = False,
                 on_bad_image: str = "raise", seed: int = 0):
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip', got {on_bad_image!r}")
        if not records:
            raise ValueError("PersonDataset needs at least one record")
        self.records = list(records)
        self.transform, self.tasks = transform, tuple(tasks)
        self.keys = self._label_keys()
        self.mean = np.array(mean, dtype=np.float32) * 255
        self.std = np.array(std, dtype=np.float32) * 255
        self.merge_parts, self.on_bad_image, self.seed = merge_parts, on_bad_image, seed
        self.epoch = 0
        self.bad_indices: set[int] = set()
        self.substitute_bad = True
        self._init_pids(pid_relabel)
        self._init_attributes(attribute_names)

    def _label_keys(self) -> tuple[str, ...]:
        unknown = [t for t in self.tasks if t not in TASK_LABELS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; valid: {sorted(TASK_LABELS)}")
        keys = [k for k in ("pid", "camid") if all(getattr(r, k) is not None for r in self.records)]
        for task in self.tasks:
            for key in TASK_LABELS[task]:
                field = _NEEDS.get(key)
                has = [getattr(r, field) is not None for r in self.records] if field else [True]
                if not (all(has) if key == "pid" else any(has)):
                    raise ValueError(f"task {task!r} needs {field!r} in the records, "
                                     f"which {'some' if any(has) else 'all'} lack")
                if key not in keys:
                    keys.append(key)
        return tuple(keys)

    def _init_pids(self, relabel: bool) -> None:
        raw = np.array([r.pid for r in self.records]) if "pid" in self.keys else None
        self.pid_map: dict[int, int] | None = None
        if raw is None:
            self.pids, self.num_ids = None, 0
            return
        identities = np.unique(raw)
        self.num_ids = len(identities)
        if relabel:
            self.pid_map = {int(p): i for i, p in enumerate(identities)}
            raw = np.searchsorted(identities, raw)
        self.pids = raw.astype(np.int64)

    def _init_attributes(self, names: Sequence[str] | None) -> None:
        lengths = {len(r.attributes) for r in self.records if r.attributes is not None}
        if len(lengths) > 1:
            raise ValueError(f"records have attribute vectors of lengths {sorted(lengths)}")
        self.num_attributes = next(iter(lengths), 0)
        if names is not None and self.num_attributes and self.num_attributes != len(names):
            raise ValueError(f"attribute_names has {len(names)} names but the records have "
                             f"{self.num_attributes} attributes")
        self.attribute_names = None if names is None else tuple(names)

    @property
    def num_bad_images(self) -> int:
        """Distinct records skipped as undecodable (in this process)."""
        return len(self.bad_indices)

    def dropping_bad(self) -> PersonDataset:
        """A shallow copy whose undecodable records (``on_bad_image="skip"``) yield the marker
        ``{"bad_index": i}`` instead of the next record; :func:`collate_dropping_bad` sets
        them aside. For evaluation, where every record must be scored at most once."""
        other = copy.copy(self)
        other.substitute_bad, other.bad_indices = False, set()
        return other

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Sample ``index``; an ``(epoch, index)`` pair overrides :meth:`set_epoch` (for
        persistent DataLoader workers, whose dataset copies never see ``set_epoch``)."""
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        for offset in range(len(self)):
            i = (int(index) + offset) % len(self)
            try:
                sample = self._sample(i, int(epoch))
            except BadImageError as e:
                if self.on_bad_image == "raise":
                    raise
                if i not in self.bad_indices:
                    self.bad_indices.add(i)
                    warnings.warn(f"skipping record {i}: {e}", RuntimeWarning, stacklevel=2)
                if not self.substitute_bad:
                    return {"bad_index": torch.tensor(i, dtype=torch.int64)}
                continue
            if self.on_bad_image == "skip" and self.substitute_bad:
                sample["bad_skipped"] = torch.tensor(offset, dtype=torch.int64)
            return sample
        raise DatasetError("on_bad_image='skip': no record of the dataset could be decoded")

    def _sample(self, i: int, epoch: int) -> dict[str, torch.Tensor]:
        r = self.records[i]
        image = read_image(r.image_path)
        mask = self._read_mask(r, image.shape[:2]) if "parts" in self.keys else None
        pose = "joints" in self.keys and r.joints is not None
        t = self.transform(image, np.random.default_rng((self.seed, epoch, i)), mask=mask,
                           joints=r.joints if pose else None,
                           joints_valid=r.joints_annotated if pose else None,
                           center=r.center, scale=r.scale)
        pixels = (t.image.astype(np.float32) - self.mean) / self.std
        sample = {"image": torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
                  "index": torch.tensor(i, dtype=torch.int64),
                  "affine": torch.from_numpy(t.affine)}
        if "pid" in self.keys:
            sample["pid"] = torch.tensor(self.pids[i], dtype=torch.int64)
        if "camid" in self.keys:
            sample["camid"] = torch.tensor(r.camid, dtype=torch.int64)
        if "attributes" in self.keys:
            attrs = r.attributes if r.attributes is not None else np.full(
                self.num_attributes, IGNORE_INDEX)
            sample["attributes"] = torch.tensor(np.asarray(attrs), dtype=torch.int64)
        if "joints" in self.keys:
            sample["joints"], sample["joints_valid"] = self._joints(t)
        if "parts" in self.keys:
            sample["parts"] = self._parts(t)
        return sample

    def _read_mask(self, r: PersonRecord, shape: tuple[int, int]) -> np.ndarray | None:
        if r.mask_path is None:
            return None
        return check_mask(read_mask(r.mask_path), r.mask_path, shape, r.image_path)

    def _joints(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (u, v) = ((x + 0.5) / W, (y + 0.5) / H); invalid joints are (0, 0)."""
        if t.joints is None:
            return torch.zeros(NUM_JOINTS, 2), torch.zeros(NUM_JOINTS, dtype=torch.bool)
        h, w = self.transform.output_size
        uv = (t.joints + 0.5) / np.array([w, h], dtype=np.float32)
        uv[~t.joints_valid] = 0.0
        return torch.from_numpy(uv.astype(np.float32)), torch.from_numpy(t.joints_valid)

    def _parts(self, t) -> torch.Tensor:
        if t.mask is None:
            return torch.full(tuple(self.transform.output_size), SEG_IGNORE, dtype=torch.int64)
        mask = merge_parts(t.mask) if self.merge_parts else t.mask
        return torch.from_numpy(mask.astype(np.int64))


def check_mask(mask: np.ndarray, mask_path: str | Path, image_shape: tuple[int, int],
               image_path: str | Path) -> np.ndarray:
    """``mask`` if it is a usable part label of its image, else a :class:`DatasetError` naming
    the file: the image's size (training and evaluation apply the same rule), and only LIP
    class ids ``0..19`` or ``SEG_IGNORE`` (255)."""
    if mask.shape != tuple(image_shape):
        raise DatasetError(f"part mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its "
                           f"image {image_path} is {image_shape[1]}x{image_shape[0]}")
    bad = (mask >= len(LIP_CLASSES)) & (mask != SEG_IGNORE)
    if bad.any():
        values = sorted({int(v) for v in np.unique(mask[bad])})
        raise DatasetError(f"part mask {mask_path}: label values {values[:5]} outside the LIP "
                           f"classes 0..{len(LIP_CLASSES) - 1} and {SEG_IGNORE} (ignore)")
    return mask


def collate_dropping_bad(samples: list[dict[str, torch.Tensor]]) -> dict:
    """``default_collate`` of the decodable samples of :meth:`PersonDataset.dropping_bad`, plus
    ``dropped``: the indices of the records left out (a list; the batch may hold only it)."""
    from torch.utils.data import default_collate

    good = [s for s in samples if "bad_index" not in s]
    batch = default_collate(good) if good else {}
    batch["dropped"] = [int(s["bad_index"]) for s in samples if "bad_index" in s]
    return batch
