"""A tiny in-process dataset of random-shape persons with labels for all four tasks.

It exists for smoke runs (``configs/tiny.yaml``) and engine tests: every item is rendered on
the fly from ``(seed, pid, index)`` with OpenCV primitives, and its labels are consistent with
the pixels: the identity fixes the clothing colours (and so the colour attributes), the body
parts are painted into the part mask, and the joints sit on the drawn limbs. The synthetic
person world (:mod:`personkit.synth`) is the realistic stand-in for real data.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from personkit.data.constants import IMAGENET_MEAN, IMAGENET_STD, MARKET_ATTRIBUTES

_COLOURS = np.array([(20, 20, 20), (235, 235, 235), (220, 40, 40), (140, 50, 170), (230, 220, 40),
                     (128, 128, 128), (40, 70, 220), (40, 170, 60), (230, 120, 170),
                     (130, 80, 40)], dtype=np.uint8)
# Part ids: LIP ids, and the merged-5 id of each (see constants.LIP_TO_MERGED5).
_PARTS20 = {"hair": 2, "face": 13, "upper": 5, "pants": 9, "larm": 14, "rarm": 15, "lshoe": 18,
            "rshoe": 19}
_PARTS5 = {"hair": 1, "face": 1, "upper": 2, "pants": 3, "larm": 2, "rarm": 2, "lshoe": 4,
           "rshoe": 4}


class FakePersonDataset(Dataset):
    """Args:
    num_ids, images_per_id: dataset size; item ``i`` shows identity ``i // images_per_id``.
    input_size: (H, W) of the rendered images.
    seg_classes: 20 (LIP ids) or 5 (merged classes) in the ``parts`` mask.
    attribute_names: attribute order of the ``attributes`` target (Market names).
    seed: everything is a pure function of the seed and the index.
    """

    def __init__(self, num_ids: int = 16, images_per_id: int = 8,
                 input_size: tuple[int, int] = (128, 64), seg_classes: int = 5,
                 attribute_names: Sequence[str] = tuple(MARKET_ATTRIBUTES),
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 seed: int = 0):
        if seg_classes not in (5, 20):
            raise ValueError(f"seg_classes must be 5 or 20, got {seg_classes}")
        unknown = [a for a in attribute_names if a not in MARKET_ATTRIBUTES]
        if unknown:
            raise ValueError(f"FakePersonDataset knows Market attributes only, not {unknown}")
        self.num_ids, self.images_per_id = num_ids, images_per_id
        self.input_size = tuple(input_size)
        self.parts = _PARTS20 if seg_classes == 20 else _PARTS5
        self.attribute_names = tuple(attribute_names)
        self.mean = np.array(mean, dtype=np.float32) * 255
        self.std = np.array(std, dtype=np.float32) * 255
        self.seed = seed
        self.pids = [i // images_per_id for i in range(len(self))]

    def __len__(self) -> int:
        return self.num_ids * self.images_per_id

    def _identity(self, pid: int) -> dict[str, int]:
        rng = np.random.default_rng([self.seed, 0, pid])
        ident = {name: int(rng.integers(len(c))) for name, c in MARKET_ATTRIBUTES.items()}
        ident["skin"] = int(rng.integers(3))
        return ident

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(index, tuple):  # (epoch, index) from the trainer; items are static
            index = index[1]
        pid = self.pids[index]
        ident = self._identity(pid)
        rng = np.random.default_rng([self.seed, 1, index])
        h, w = self.input_size
        image = rng.integers(60, 140, size=(h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), dtype=np.uint8)
        joints = _random_joints(rng, h, w)
        _draw_person(image, mask, joints, ident, self.parts)
        attributes = [ident[name] for name in self.attribute_names]
        u = (joints[:, 0] + 0.5) / w
        v = (joints[:, 1] + 0.5) / h
        tensor = (image.astype(np.float32) - self.mean) / self.std
        return {
            "image": torch.from_numpy(tensor.transpose(2, 0, 1).copy()),
            "index": torch.tensor(index),
            "pid": torch.tensor(pid),
            "camid": torch.tensor(int(rng.integers(6))),
            "attributes": torch.tensor(attributes, dtype=torch.int64),
            "joints": torch.from_numpy(np.stack([u, v], 1).astype(np.float32)),
            "joints_valid": torch.from_numpy((u > 0) & (u < 1) & (v > 0) & (v < 1)),
            "parts": torch.from_numpy(mask.astype(np.int64)),
        }


def _random_joints(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """16 MPII joints of an upright figure with random position, size and limb angles."""
    s = h * rng.uniform(0.7, 0.9)  # body height in pixels
    cx = w / 2 + rng.uniform(-0.1, 0.1) * w
    top = (h - s) / 2 + rng.uniform(-0.05, 0.05) * h
    y = lambda f: top + f * s  # noqa: E731
    j = np.zeros((16, 2), dtype=np.float32)
    j[9], j[8], j[7], j[6] = (cx, y(0.0)), (cx, y(0.16)), (cx, y(0.2)), (cx, y(0.52))
    half = 0.12 * s
    j[12], j[13] = (cx - half, y(0.2)), (cx + half, y(0.2))
    j[2], j[3] = (cx - 0.6 * half, y(0.52)), (cx + 0.6 * half, y(0.52))
    for shoulder, elbow, wrist, side in ((12, 11, 10, -1), (13, 14, 15, 1)):
        a = rng.uniform(0.05, 0.9)
        j[elbow] = j[shoulder] + 0.15 * s * np.array([side * np.sin(a), np.cos(a)])
        j[wrist] = j[elbow] + 0.14 * s * np.array([side * np.sin(a * 1.3), np.cos(a * 1.3)])
    for hip, knee, ankle, side in ((2, 1, 0, -1), (3, 4, 5, 1)):
        a = rng.uniform(0.0, 0.3)
        j[knee] = j[hip] + 0.23 * s * np.array([side * np.sin(a), np.cos(a)])
        j[ankle] = j[knee] + 0.23 * s * np.array([side * np.sin(a / 2), np.cos(a / 2)])
    return j


def _draw_person(image: np.ndarray, mask: np.ndarray, j: np.ndarray, ident: dict,
                 parts: dict[str, int]) -> None:
    """Paint limbs, clothes and head into ``image`` and their part ids into ``mask``."""
    s = float(np.linalg.norm(j[9] - j[6]))
    thick = max(2, int(0.07 * s))
    upper = tuple(int(c) for c in _COLOURS[ident["upcolor"]])
    lower = tuple(int(c) for c in _COLOURS[ident["downcolor"]])
    skin = [(225, 190, 160), (190, 140, 100), (120, 80, 50)][ident["skin"]]

    def limb(a: int, b: int, colour: tuple, part: str) -> None:
        pa, pb = tuple(int(v) for v in j[a]), tuple(int(v) for v in j[b])
        cv2.line(image, pa, pb, colour, thick)
        cv2.line(mask, pa, pb, parts[part], thick)

    for a, b in ((3, 4), (4, 5), (2, 1), (1, 0), (6, 2), (6, 3)):
        limb(a, b, lower, "pants")
    torso = np.array([j[12], j[13], j[3], j[2]], dtype=np.int32)
    cv2.fillPoly(image, [torso], upper)
    cv2.fillPoly(mask, [torso], parts["upper"])
    for (a, b), part in (((12, 11), "rarm"), ((11, 10), "rarm"), ((13, 14), "larm"),
                         ((14, 15), "larm")):
        limb(a, b, upper if ident["up"] == 0 and a in (12, 13) else skin, part)
    for ankle, part in ((0, "rshoe"), (5, "lshoe")):
        centre = tuple(int(v) for v in j[ankle])
        cv2.circle(image, centre, thick, (30, 30, 30), -1)
        cv2.circle(mask, centre, thick, parts[part], -1)
    head = tuple(int(v) for v in (j[8] + j[9]) / 2)
    radius = max(2, int(0.09 * s))
    hair = (40, 30, 20) if ident["hair"] == 0 else (200, 170, 60)
    cv2.circle(image, head, radius + 1, hair, -1)
    cv2.circle(mask, head, radius + 1, parts["hair"], -1)
    cv2.circle(image, head, max(1, radius - 1), skin, -1)
    cv2.circle(mask, head, max(1, radius - 1), parts["face"], -1)
