"""Trivial baselines that a trained model must beat, scored by the same evaluation code (a test
helper of ``test_learnability.py``).

* ReID: random embeddings (seeded).
* Attributes: the majority class of every attribute in the training labels.
* Pose: the mean training pose, in normalised crop coordinates.
* Parts: every pixel background.

:class:`TrivialBaseline` has the model interface the evaluation runner uses (``meta``,
``enabled``, ``forward(images, heads)`` returning :class:`~personkit.models.PersonOutputs`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from personkit.data.constants import IGNORE_INDEX
from personkit.data.dataset import PersonDataset
from personkit.models import ModelMeta, PersonOutputs


class TrivialBaseline(nn.Module):
    """Args:
    meta: the metadata of the model it stands in for (embedding width, attributes, parts).
    attribute_majority: attribute name -> majority class.
    mean_pose: J×2 normalised (x, y) mean of the training joints.
    seed: seed of the random embeddings.
    """

    def __init__(self, meta: ModelMeta, attribute_majority: Mapping[str, int] | None = None,
                 mean_pose: np.ndarray | None = None, seed: int = 0):
        super().__init__()
        self.meta = meta
        self.enabled = tuple(meta.heads)
        self.attribute_majority = dict(attribute_majority or {})
        self.mean_pose = None if mean_pose is None else torch.as_tensor(mean_pose).float()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, images: torch.Tensor, heads: Collection[str] | None = None) -> PersonOutputs:
        heads = self.enabled if heads is None else heads
        b, _, h, w = images.shape
        out = PersonOutputs()
        if "reid" in heads:
            out.embedding = torch.randn(b, max(1, self.meta.embedding_dim),
                                        generator=self.generator)
        if "attributes" in heads:
            out.attributes = {
                name: _one_hot(b, len(classes), self.attribute_majority.get(name, 0))
                for name, classes in self.meta.attributes.items()}
        if "pose" in heads:
            out.keypoints = self.mean_pose.expand(b, -1, -1).clone()
            out.keypoint_scores = torch.ones(b, len(self.mean_pose))
        if "segmentation" in heads:
            out.parts = torch.zeros(b, len(self.meta.part_classes), h, w)
            out.parts[:, 0] = 1.0
        return out


def _one_hot(batch: int, classes: int, index: int) -> torch.Tensor:
    logits = torch.zeros(batch, classes)
    logits[:, index] = 1.0
    return logits


def majority_attributes(dataset: PersonDataset, names: Sequence[str]) -> dict[str, int]:
    """The most frequent labelled class of each attribute over the records."""
    labels = np.stack([r.attributes for r in dataset.records if r.attributes is not None])
    out = {}
    for a, name in enumerate(names):
        column = labels[:, a]
        column = column[column != IGNORE_INDEX]
        out[name] = int(np.bincount(column).argmax()) if len(column) else 0
    return out


def mean_pose(dataset: PersonDataset, samples: int = 256) -> np.ndarray:
    """Mean normalised joint positions over (up to ``samples``) un-augmented samples."""
    picks = np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int)
    total = np.zeros((16, 2))
    count = np.zeros((16, 1))
    for i in picks:
        item = dataset[int(i)]
        valid = item["joints_valid"].numpy()[:, None]
        total += item["joints"].numpy() * valid
        count += valid
    return total / np.maximum(count, 1)
