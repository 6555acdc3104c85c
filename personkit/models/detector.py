"""The person detector ``personkit train-detector`` trains: torchvision's FCOS (Tian et al.,
ICCV 2019; anchor-free, one class) on three levels (strides 8, 16, 32) of a timm backbone with a
small FPN and P6/P7, so that it trains from scratch on a CPU in minutes. Frames are resized and
normalised inside the model (torchvision's transform); it takes RGB frames in [0, 1] and
returns boxes, scores and labels (1: person), as every torchvision detector does.

Also the torch side of running a detector, which training's evaluation and ``--detector``
share: the contract of every back-end (:class:`DetectorBase`: RGB ``uint8`` frames in, ``N×5``
``x1, y1, x2, y2, score`` person boxes out, cleaned by :func:`clean_detections`) and
:class:`TorchvisionDetector` (this detector or torchvision's COCO detectors by name). The ONNX
back-end and the choice of a detector from ``--detector`` are
:mod:`personkit.inference.detectors`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from personkit.data.constants import DETECTOR_SCORE, PERSON_LABEL

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


# ----------------------------------------------------------------------------- the contract


def clean_detections(raw: np.ndarray, width: int, height: int,
                     min_score: float = 0.0) -> tuple[np.ndarray, int]:
    """``raw`` (``N×5``) clipped to a ``width×height`` frame, without non-finite rows, boxes
    of no area and scores below ``min_score``, best score first; and the number of
    non-finite rows dropped."""
    raw = np.asarray(raw, dtype=np.float32).reshape(-1, 5)
    finite = np.isfinite(raw).all(1)
    out = raw[finite].copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1]) & (out[:, 4] >= min_score)
    out = out[keep]
    return out[np.argsort(-out[:, 4], kind="stable")], int((~finite).sum())


class DetectorBase:
    """What every back-end shares: the name, the score threshold and the dropped count."""

    name: str = "detector"

    def __init__(self, min_score: float = DETECTOR_SCORE):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"detector score threshold must be in [0, 1], got {min_score}")
        self.min_score, self.dropped = float(min_score), 0

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Person boxes ``N×5`` (``x1, y1, x2, y2, score``) for each RGB ``uint8`` image."""
        out = []
        for image, raw in zip(images, self._raw(images), strict=True):
            boxes, bad = clean_detections(raw, image.shape[1], image.shape[0], self.min_score)
            self.dropped += bad
            out.append(boxes)
        return out

    def _raw(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


# ----------------------------------------------------------------------------- torchvision


def torchvision_detectors() -> list[str]:
    """The names of torchvision's detection builders."""
    from torchvision.models import detection, list_models

    return list_models(module=detection)


class TorchvisionDetector(DetectorBase):
    """A torchvision detector, persons only.

    Args:
        name: a builder of :func:`torchvision_detectors`.
        weights: ``"DEFAULT"`` (the published COCO weights, from torch's cache or downloaded
            by torchvision), None (random weights, offline), or a module already built
            (``model``; e.g. a detector trained by personkit).
        person_label: the label of persons in the model's output.
    """

    def __init__(self, name: str, weights: str | None = "DEFAULT", device: str = "cpu",
                 min_score: float = DETECTOR_SCORE, model: torch.nn.Module | None = None,
                 person_label: int = PERSON_LABEL, **builder: Any):
        super().__init__(min_score)
        self.name, self.device, self.person_label = name, torch.device(device), person_label
        self.model = (model if model is not None else build_torchvision(name, weights, **builder))
        self.model = self.model.to(self.device).eval()

    @torch.inference_mode()
    def _raw(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        batch = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float()
                 .div_(255).to(self.device) for im in images]
        out = []
        for det in self.model(batch):
            person = det["labels"] == self.person_label
            out.append(torch.cat([det["boxes"][person], det["scores"][person, None]], 1)
                       .float().cpu().numpy())
        return out


def build_torchvision(name: str, weights: str | None = "DEFAULT", **builder: Any
                      ) -> torch.nn.Module:
    """torchvision's ``name`` with COCO ``weights`` (``"DEFAULT"``) or random ones (None),
    never downloading backbone weights for a random model.

    Raises:
        ValueError: an unknown name (listing the valid ones).
        FileNotFoundError: the weights are neither cached nor downloadable (naming the file,
            the cache folder and the URL).
    """
    from torchvision.models import get_model, get_model_weights

    valid = torchvision_detectors()
    if name not in valid:
        raise ValueError(f"unknown torchvision detector {name!r}; valid: {', '.join(valid)}")
    if weights is None:
        return get_model(name, weights=None, weights_backbone=None, **builder)
    enum = get_model_weights(name)[weights] if weights != "DEFAULT" else (
        get_model_weights(name).DEFAULT)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = cache / Path(enum.url).name
    try:
        return get_model(name, weights=enum, **builder)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash a RuntimeError
        if file.is_file() and "hash" not in str(e).lower():
            raise
        raise FileNotFoundError(
            f"the {name} weights are not cached and could not be downloaded ({e}): copy "
            f"{file.name} from {enum.url} into {cache} (TORCH_HOME sets the folder), or use "
            f"a detector file (--detector FILE.onnx or a personkit detector run)") from None
