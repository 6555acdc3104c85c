"""The one composed multi-task model (Pfeiffer et al., GCPR 2019, Sec. 3 and Fig. 2/4).

Sharing variants:

* ``single`` (M^SB): every head on one backbone.
* ``multi`` (M^MB): the last stage (ResNet ``layer4``, the paper's "block 5") is duplicated
  per task branch, every copy starting from the same weights. Branches: ``reid`` (the
  embedding and the ID classifier, which is a ReID loss on that embedding), ``attributes``,
  ``pose`` and ``segmentation`` (whose copy feeds the FPN's top level).
* ``split`` (M^SB/Split): one backbone whose output is split channel-wise. The last J channels
  *are* the pose heatmaps (no 1×1 conv; non-negative after the final ReLU, as in the authors'
  code) and the remaining ``C - J`` channels feed every other head, so the embedding is
  ``C - J`` wide (2032 for ResNet-50, 496 for ResNet-18).

The model returns the same :class:`PersonOutputs` in training and evaluation. ``forward`` may
be asked for a subset of the enabled heads; the others stay ``None`` and cost nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from personkit.config import ALL_HEADS
from personkit.models.backbone import ResNetBackbone
from personkit.models.fpn import FPN
from personkit.models.heads import AttributeHead, IdHead, PoseHead, ReidHead, SemanticFPNHead

T = TypeVar("T")

HEADS = ALL_HEADS
#: The heads with an output at inference (the ``id`` classifier trains the embedding only).
TASKS = tuple(h for h in HEADS if h != "id")
SHARING = ("single", "multi", "split")
BRANCH_OF = {"reid": "reid", "id": "reid", "attributes": "attributes", "pose": "pose",
             "segmentation": "segmentation"}


@dataclass
class PersonOutputs:
    """What the model returns; a field is ``None`` when its head was not run."""

    embedding: torch.Tensor | None = None  # B×D ReID embedding
    id_logits: torch.Tensor | None = None  # B×num_ids
    attributes: dict[str, torch.Tensor] | None = None  # name -> B×classes logits
    heatmaps: torch.Tensor | None = None  # B×J×h×w logits
    keypoints: torch.Tensor | None = None  # B×J×2 normalised (x, y), see heads.pose
    keypoint_scores: torch.Tensor | None = None  # B×J in [0, 1]
    parts: torch.Tensor | None = None  # B×C×H×W logits at the input size


@dataclass
class Trunk:
    """Backbone features (:meth:`MultiTaskModel.trunk`): the shared stages and each branch's
    last stage."""

    low: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # C2, C3, C4 (strides 4, 8, 16)
    top: dict[str, torch.Tensor]  # branch name -> its C5
    size: tuple[int, int]  # input (H, W), the size of the part logits


@dataclass(frozen=True)
class ModelMeta:
    """What inference and export need to know, carried by the model and its checkpoints."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    heads: tuple[str, ...]
    embedding_dim: int = 0
    joint_names: tuple[str, ...] = ()
    part_classes: tuple[str, ...] = ()
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    num_ids: int = 0
    sharing: str = "single"
    backbone: str = ""
    norm: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelMeta:
        d = dict(d)
        for key in ("input_size", "mean", "std", "heads", "joint_names", "part_classes"):
            if key in d:
                d[key] = tuple(d[key])
        d["attributes"] = {k: tuple(v) for k, v in d.get("attributes", {}).items()}
        return cls(**d)


class MultiTaskModel(nn.Module):
    """One backbone, any subset of the four task heads, three sharing variants.

    Args:
        backbone: a :class:`ResNetBackbone`; heads are sized from its channels and strides.
        heads: enabled heads, a subset of ``reid, id, attributes, pose, segmentation``.
        sharing: ``single``, ``multi`` or ``split``.
        num_ids: training identities (``id`` head).
        attributes: attribute name -> number of classes (``attributes`` head).
        num_joints: pose joints (16, MPII order).
        seg_classes: part classes (20 LIP or 5 merged).
        fpn_channels, seg_channels: widths of the FPN and of the semantic branch.
        pose_features: ``c5`` puts the pose head on the last stage (stride 16, the paper) or
            ``fpn`` on the finest FPN level (stride 4; single-branch only; not in the paper):
            4× finer heatmaps, which small inputs need (96×96 gives a 6×6 map at stride 16).
        pose_window: ``None`` decodes with the global soft-argmax (the paper); ``r`` with the
            soft-argmax over the cells within ``r`` of the peak (:mod:`.heads.pose`).
        meta: preprocessing and label metadata; ``embedding_dim`` is filled in here.
    """

    def __init__(self, backbone: ResNetBackbone, heads: Sequence[str], *, sharing: str = "single",
                 num_ids: int = 0, attributes: Mapping[str, int] | None = None,
                 num_joints: int = 16, seg_classes: int = 20, fpn_channels: int = 256,
                 seg_channels: int = 128, pose_features: str = "c5",
                 pose_window: int | None = None, meta: ModelMeta):
        super().__init__()
        _check_args(heads, sharing, num_ids, attributes, pose_features)
        self.backbone = backbone
        self.sharing = sharing
        self.enabled = tuple(h for h in HEADS if h in heads)
        self.num_joints = num_joints
        c5 = backbone.channels[-1]
        width = c5 - num_joints if sharing == "split" else c5
        if width <= 0:
            raise ValueError(f"split-pose needs more than {num_joints} backbone channels")
        self.branches = nn.ModuleDict()  # multi-branch copies of the last stage
        if sharing == "multi":
            names = list(dict.fromkeys(BRANCH_OF[h] for h in self.enabled))
            for name in names[1:]:  # the first branch uses backbone.layer4 itself
                self.branches[name] = copy.deepcopy(backbone.layer4)
        self.heads = nn.ModuleDict()
        if "reid" in self.enabled or "id" in self.enabled or "attributes" in self.enabled:
            self.heads["reid"] = ReidHead()  # global max pooling, used by every global head
        if "id" in self.enabled:
            self.heads["id"] = IdHead(width, num_ids)
        if "attributes" in self.enabled:
            self.heads["attributes"] = AttributeHead(width, attributes or {})
        self.pose_on_fpn = "pose" in self.enabled and pose_features == "fpn"
        if "segmentation" in self.enabled or self.pose_on_fpn:
            self.fpn = FPN(backbone.channels[:-1] + [width], fpn_channels)
        if "pose" in self.enabled:
            pose_in = num_joints if sharing == "split" else c5
            pose_in = fpn_channels if self.pose_on_fpn else pose_in
            self.heads["pose"] = PoseHead(pose_in, num_joints, conv=sharing != "split",
                                          window=pose_window)
        if "segmentation" in self.enabled:
            self.heads["segmentation"] = SemanticFPNHead(fpn_channels, backbone.strides,
                                                         seg_classes, seg_channels)
        self.meta = ModelMeta(**{**meta.to_dict(), "embedding_dim": width,
                                 "heads": self.enabled, "sharing": sharing})

    def branch_of(self, head: str) -> str:
        """The branch whose last stage feeds ``head``: its task branch under ``multi``, the one
        shared branch (``shared``) otherwise."""
        return BRANCH_OF[head] if self.sharing == "multi" else "shared"

    def _stage(self, branch: str) -> nn.Module:
        return self.branches[branch] if branch in self.branches else self.backbone.layer4

    def _wanted(self, heads: Collection[str] | None) -> tuple[str, ...]:
        wanted = self.enabled if heads is None else tuple(h for h in self.enabled if h in heads)
        if heads is not None and len(wanted) != len(set(heads)):
            raise ValueError(f"requested heads {sorted(heads)} but enabled are {self.enabled}")
        return wanted

    def _fpn_branch(self) -> str:
        return self.branch_of("segmentation" if "segmentation" in self.enabled else "pose")

    def trunk(self, images: torch.Tensor, heads: Collection[str] | None = None) -> Trunk:
        """The backbone part of :meth:`forward`: stages C2-C4 once, and the last stage (C5) of
        each branch that the requested heads (default: all enabled) read."""
        wanted = self._wanted(heads)
        c2, c3, c4 = self.backbone.forward_stages(images)
        branches = {self.branch_of(h) for h in wanted}
        if "segmentation" in wanted or ("pose" in wanted and self.pose_on_fpn):
            branches.add(self._fpn_branch())
        tops = {b: self._stage(b)(c4) for b in sorted(branches)}
        return Trunk((c2, c3, c4), tops, (images.shape[-2], images.shape[-1]))

    def run_heads(self, trunk: Trunk, heads: Collection[str] | None = None) -> PersonOutputs:
        """The head part of :meth:`forward` on :meth:`trunk` features. Every global head
        pools its own branch: under ``multi`` the attributes read the attribute branch."""
        wanted = self._wanted(heads)
        out = PersonOutputs()
        if "reid" in wanted or "id" in wanted:
            out.embedding = self.embed(trunk, "reid")
        if "id" in wanted:
            out.id_logits = self.heads["id"](out.embedding)
        if "attributes" in wanted:
            out.attributes = self.heads["attributes"](self.embed(trunk, "attributes"))
        pyramid: list[torch.Tensor] = []
        if "segmentation" in wanted or ("pose" in wanted and self.pose_on_fpn):
            pyramid = self.pyramid(trunk)
        if "pose" in wanted:
            features = pyramid[0] if self.pose_on_fpn else trunk.top[self.branch_of("pose")]
            out.heatmaps, out.keypoints, out.keypoint_scores = self._pose(features)
        if "segmentation" in wanted:
            logits = self.heads["segmentation"](pyramid)
            out.parts = F.interpolate(logits, size=trunk.size, mode="bilinear",
                                      align_corners=False)
        return out

    def embed(self, trunk: Trunk, head: str) -> torch.Tensor:
        """The globally pooled features of ``head``'s branch (for ``reid``: the embedding)."""
        return self.heads["reid"](self._task_features(trunk.top[self.branch_of(head)]))

    def pyramid(self, trunk: Trunk) -> list[torch.Tensor]:
        """FPN levels P2-P5 on C2-C4 and the segmentation (or pose) branch's C5."""
        top = self._task_features(trunk.top[self._fpn_branch()])
        return self.fpn([*trunk.low, top])

    def forward(self, images: torch.Tensor, heads: Collection[str] | None = None) -> PersonOutputs:
        """Run the backbone once and the requested heads (default: all enabled heads):
        ``run_heads(trunk(images, heads), heads)``."""
        return self.run_heads(self.trunk(images, heads), heads)

    def _task_features(self, c5: torch.Tensor) -> torch.Tensor:
        return c5[:, : c5.shape[1] - self.num_joints] if self.sharing == "split" else c5

    def _pose(self, c5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.sharing == "split":
            c5 = c5[:, c5.shape[1] - self.num_joints:]
        return self.heads["pose"](c5)


def mean_with_mirror(embedding: T, mirrored: T) -> T:
    """The flip test-time augmentation rule for ReID embeddings (tensors or arrays): the
    plain mean of an image's embedding and its mirror image's (normalise afterwards if the
    pipeline normalises). The one copy: :func:`flip_tta_embedding` and every inference
    engine of the Predictor use it."""
    return (embedding + mirrored) / 2


def flip_tta_embedding(model: Callable[..., PersonOutputs], images: torch.Tensor,
                       embedding: torch.Tensor) -> torch.Tensor:
    """Flip TTA with a torch model (evaluation): :func:`mean_with_mirror` of ``embedding``
    (of ``images``) and the embedding of the mirrored images."""
    return mean_with_mirror(embedding, model(images.flip(-1), heads=("reid",)).embedding)


def _check_args(heads: Sequence[str], sharing: str, num_ids: int,
                attributes: Mapping[str, int] | None, pose_features: str) -> None:
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads:
        raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {list(heads)}")
    if sharing not in SHARING:
        raise ValueError(f"unknown sharing {sharing!r}; valid: {SHARING}")
    if "id" in heads and num_ids <= 0:
        raise ValueError("the 'id' head needs num_ids > 0")
    if "attributes" in heads and not attributes:
        raise ValueError("the 'attributes' head needs at least one attribute")
    if pose_features not in ("c5", "fpn"):
        raise ValueError(f"unknown pose_features {pose_features!r}; valid: c5, fpn")
    if pose_features == "fpn" and sharing != "single":
        raise ValueError(f"pose_features='fpn' needs sharing='single', got {sharing!r}")
