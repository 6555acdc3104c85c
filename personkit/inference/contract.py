"""The one contract between the model, its exports and every engine: which tasks run, under
which output names, in which order, and the metadata an exported file carries.

A graph takes ``images``, a normalised ``B×3×H×W`` float32 batch at the model's input size,
and returns, for the heads it runs and in this order (each with a dynamic batch axis):

* ``embedding``: ``B×D`` ReID embedding;
* ``attr_<name>``: ``B×C`` logits, one per attribute (e.g. ``attr_gender``);
* ``keypoints``: ``B×16×2`` normalised (x, y), ``u = (x + 0.5) / W`` in the crop;
* ``keypoint_scores``: ``B×16`` confidences;
* ``parts``: ``B×C×H×W`` part logits at the input size (an engine may give ``part_labels``
  instead: the ``uint8`` arg-max).

An exported file stores the model's :class:`~personkit.models.ModelMeta` and its heads as JSON
strings under ``personkit_meta`` and ``personkit_heads`` (ONNX ``metadata_props``, OpenVINO
``rt_info``), so no config is needed to run it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence

import torch
from torch import nn

from personkit.models import TASKS as TASKS  # re-exported: the tasks an engine runs
from personkit.models import ModelMeta, PersonOutputs
from personkit.models.identity import model_identity as model_identity  # re-exported

META_KEY, HEADS_KEY = "personkit_meta", "personkit_heads"
#: The content hash of the weights an export was written from (the model's identity).
WEIGHTS_KEY = "personkit_weights"
#: The calibration records of those weights (:mod:`personkit.models.identity`).
CALIBRATION_KEY = "personkit_calibration"


def attribute_output(name: str) -> str:
    """The output name of attribute ``name``'s logits."""
    return f"attr_{name}"


def output_names(meta: ModelMeta, heads: Sequence[str]) -> list[str]:
    """Output names for ``heads``, in graph order."""
    names = ["embedding"] if "reid" in heads else []
    if "attributes" in heads:
        names += [attribute_output(name) for name in meta.attributes]
    if "pose" in heads:
        names += ["keypoints", "keypoint_scores"]
    if "segmentation" in heads:
        names.append("parts")
    return names


def select_heads(requested: Collection[str] | None, available: Sequence[str],
                 source: str = "this model") -> tuple[str, ...]:
    """``requested`` in task order (default: every task in ``available``); a task that is not
    available, or an empty request, is a ``ValueError`` naming what ``source`` has."""
    available = tuple(t for t in TASKS if t in available)
    if requested is None:
        requested = available
    missing = [h for h in requested if h not in available]
    if missing:
        raise ValueError(f"heads {missing} are not available; {source} has {available}")
    if not requested:
        raise ValueError(f"no heads to run; {source} has {available}")
    return tuple(t for t in TASKS if t in requested)


def named_outputs(out: PersonOutputs, meta: ModelMeta,
                  heads: Sequence[str]) -> dict[str, torch.Tensor]:
    """The model's outputs for ``heads`` under their names, in graph order."""
    named: dict[str, torch.Tensor] = {}
    if "reid" in heads:
        named["embedding"] = out.embedding
    if "attributes" in heads:
        named.update({attribute_output(n): out.attributes[n] for n in meta.attributes})
    if "pose" in heads:
        named["keypoints"], named["keypoint_scores"] = out.keypoints, out.keypoint_scores
    if "segmentation" in heads:
        named["parts"] = out.parts
    return named


def person_outputs(named: Mapping[str, torch.Tensor], meta: ModelMeta,
                   heads: Sequence[str]) -> PersonOutputs:
    """:class:`PersonOutputs` from named outputs (the inverse of :func:`named_outputs`); part
    labels alone (``part_labels``) become one-hot part scores, whose arg-max gives them back."""
    out = PersonOutputs(embedding=named.get("embedding"), keypoints=named.get("keypoints"),
                        keypoint_scores=named.get("keypoint_scores"), parts=named.get("parts"))
    if "attributes" in heads:
        out.attributes = {n: named.get(attribute_output(n)) for n in meta.attributes}
    if out.parts is None and "part_labels" in named:
        labels = named["part_labels"].long()
        out.parts = torch.nn.functional.one_hot(labels, len(meta.part_classes)
                                                ).permute(0, 3, 1, 2).float()
    return out


class ExportWrapper(nn.Module):
    """``forward(images)`` -> the tuple of outputs named by :func:`output_names` (what an
    export traces)."""

    def __init__(self, model: nn.Module, heads: Sequence[str]):
        super().__init__()
        self.model = model
        self.heads = tuple(heads)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images, heads=self.heads)
        return tuple(named_outputs(out, self.model.meta, self.heads).values())


def export_metadata(meta: ModelMeta, heads: Sequence[str], weights: str | None = None,
                    calibrations: Mapping[str, dict] | None = None) -> dict[str, str]:
    """The string metadata an exported file carries: ``personkit_meta``, ``personkit_heads``
    and, when known, ``personkit_weights`` (the content hash of the weights it came from) and
    ``personkit_calibration`` (the records of ``calibrations`` made with those weights)."""
    props = {META_KEY: json.dumps(meta.to_dict()), HEADS_KEY: json.dumps(list(heads))}
    if not weights:
        return props
    props[WEIGHTS_KEY] = weights
    ours = {k: r for k, r in (calibrations or {}).items() if r.get("weights") == weights}
    if ours:
        props[CALIBRATION_KEY] = json.dumps(ours)
    return props


def parse_metadata(props: Mapping[str, str], source: str) -> tuple[ModelMeta, tuple[str, ...]]:
    """:class:`ModelMeta` and exported heads from an exported file's metadata.

    Raises:
        ValueError: the file was not written by ``personkit export`` (no ``personkit_meta``).
    """
    if META_KEY not in props:
        raise ValueError(f"{source} has no personkit metadata ({META_KEY!r}); it was not "
                         f"written by `personkit export`, so its input size, mean/std, output "
                         f"names and class names are unknown. Re-export it with "
                         f"`personkit export --model MODEL --onnx FILE`")
    meta = ModelMeta.from_dict(json.loads(props[META_KEY]))
    heads = tuple(json.loads(props[HEADS_KEY])) if HEADS_KEY in props else tuple(
        t for t in TASKS if t in meta.heads)
    return meta, heads
