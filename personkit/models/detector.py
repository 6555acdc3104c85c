"""The person detector ``personkit train-detector`` trains: torchvision's FCOS (Tian et al.,
ICCV 2019; anchor-free, one class) on three levels (strides 8, 16, 32) of a timm backbone with a
small FPN and P6/P7, so that it trains from scratch on a CPU in minutes. Frames are resized and
normalised inside the model (torchvision's transform); it takes RGB frames in [0, 1] and
returns boxes, scores and labels (1: person), as every torchvision detector does.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: The label of persons (as in torchvision's COCO detectors; 0 is background).
PERSON_LABEL = 1
#: ``kind`` in a detector weight file's metadata.
DETECTOR_KIND = "person_detector"


class TimmFPN(nn.Module):
    """A timm backbone's last three feature levels, through an FPN with P6 and P7."""

    def __init__(self, backbone: str = "resnet10t", channels: int = 64):
        import timm
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        super().__init__()
        self.body = timm.create_model(backbone, pretrained=False, features_only=True,
                                      out_indices=(2, 3, 4))
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), channels,
                                         extra_blocks=LastLevelP6P7(channels, channels))
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_person_detector(backbone: str = "resnet10t", fpn_channels: int = 64,
                          min_size: int = 180, max_size: int = 320,
                          score_threshold: float = 0.2) -> nn.Module:
    """An FCOS person detector with random weights (two classes: background, person)."""
    from torchvision.models.detection import FCOS

    return FCOS(TimmFPN(backbone, fpn_channels), num_classes=2, min_size=min_size,
                max_size=max_size, score_thresh=score_threshold, detections_per_img=100)


def detector_from_config(model: dict[str, Any]) -> nn.Module:
    """:func:`build_person_detector` from a ``model`` section (a dict, as stored)."""
    return build_person_detector(model["backbone"], model["fpn_channels"], model["min_size"],
                                 model["max_size"], model["score_threshold"])


def is_detector_file(path: str | Path) -> bool:
    """Whether ``path`` (a run directory or ``.safetensors``) holds a person detector."""
    import json

    from safetensors import safe_open

    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    return meta.get("kind") == DETECTOR_KIND


def load_person_detector(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The detector of a ``train-detector`` run directory or its ``model.safetensors``
    (weights loaded strictly) and its stored config.

    Raises:
        ValueError: the file is not a person detector (naming it).
    """
    from personkit.checkpoint import read_weights
    from personkit.models.weights import load_strict

    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    state, header = read_weights(file) if (
        file.suffix == ".safetensors" and file.is_file()) else ({}, {})
    if (header.get("meta") or {}).get("kind") != DETECTOR_KIND:
        raise ValueError(f"{file} is not a personkit person detector (no model.safetensors "
                         f"written by `personkit train-detector`)")
    model = detector_from_config(header["config"]["model"])
    load_strict(model, state, source=str(file))
    return model.eval(), header["config"]


def write_detector_onnx(model: nn.Module, config: dict[str, Any], path: str | Path,
                        opset: int = 17) -> Path:
    """Write a person detector as ONNX in the torchvision layout (one ``[3, H, W]`` RGB frame
    in [0, 1] with dynamic H and W; ``boxes``, ``scores``, ``labels`` out, resizing and NMS
    inside) with its config in the metadata (``personkit_detector``)."""
    import json
    import warnings

    from personkit.extras import require

    onnx = require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(3, 270, 480)
    with torch.inference_mode():  # the traced outputs come in the order of the model's dict
        names = list(model([example])[0])  # FCOS: boxes, scores, labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on the transform's shape arithmetic
        torch.onnx.export(model, ([example],), str(path), dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=names,
                          dynamic_axes={"images": {1: "height", 2: "width"},
                                        **{n: {0: "detections"} for n in names}})
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"personkit_detector": json.dumps(config)})
    onnx.save(proto, str(path))
    return path

