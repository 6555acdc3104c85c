"""Batched inference on person boxes: one forward pass of the multi-task model per batch.

Implements the inference side of Pfeiffer et al. (GCPR 2019, Fig. 1): given person boxes, the
shared network returns a ReID embedding, the attributes, the 16 MPII joints and a part label
map for every box.

Images, boxes and crops follow :mod:`personkit.inference.preprocess`. Outputs:

* Keypoints are returned in 0-based pixel-centre coordinates of the image (integer ``x`` is the
  centre of pixel column ``x``, as in :mod:`personkit.data.records`). The model predicts
  ``u = (x_c + 0.5) / W_in`` in the crop, so ``x = x1 + u * box_w - 0.5``.
* ``parts`` is a ``uint8`` label map over the integer pixel rectangle ``parts_box`` (the box
  rounded to whole pixels), from the arg-max at the input size and a nearest-neighbour lookup.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from personkit.data.constants import LIP_TO_MERGED5, MERGED5_CLASSES
from personkit.inference.backends import ENGINES, Engine, TorchEngine, is_export, open_export
from personkit.inference.contract import TASKS as TASKS  # re-exported: the tasks a predictor runs
from personkit.inference.contract import attribute_output, model_identity, select_heads
from personkit.inference.preprocess import clip_boxes, crop_box, normalise, to_rgb_uint8
from personkit.models.identity import read_calibrations
from personkit.models.loading import load_model
from personkit.models.multitask import mean_with_mirror
from personkit.runtime import resolve_device

PRECISIONS = ("fp32", "bf16", "fp16")


class PredictionStopped(RuntimeError):
    """:meth:`Predictor.predict_many` was asked to stop (its ``stop`` became true)."""


class AttributePrediction(NamedTuple):
    """One attribute's decision (``label``: the arg-max, or for a binary attribute with a
    calibrated threshold, class 1 when its probability reaches the threshold), the decided
    class's softmax probability, and every class's (in the model's class order)."""

    label: str
    probability: float
    probabilities: tuple[float, ...] = ()

    @property
    def positive(self) -> float | None:
        """A binary attribute's probability of class 1 ("yes", "female", "long"); None for
        other attributes."""
        return self.probabilities[1] if len(self.probabilities) == 2 else None


@dataclass
class PersonResult:
    """Everything predicted for one person box; a field is ``None`` when its head was off.

    Attributes:
        box: ``x1, y1, x2, y2`` after clipping to the image (for a crop: the whole crop).
        embedding: ``D`` float32 ReID embedding (raw, not L2-normalised).
        attributes: attribute name -> (label, probability).
        keypoints: ``J×3`` float32: x, y in image pixels and a confidence in [0, 1].
        parts: ``h×w`` uint8 class ids covering ``parts_box``.
        parts_box: integer ``x1, y1, x2, y2`` pixel rectangle covered by ``parts``.
        part_classes: the class names of the ids in ``parts`` (20 LIP or 5 merged).
    """

    box: tuple[float, float, float, float]
    embedding: np.ndarray | None = None
    attributes: dict[str, AttributePrediction] | None = None
    keypoints: np.ndarray | None = None
    parts: np.ndarray | None = None
    parts_box: tuple[int, int, int, int] | None = None
    part_classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: box, attributes, keypoints and part-class pixel fractions
        (the embedding and the label map are large and are stored separately)."""
        out: dict[str, Any] = {"box": [round(float(v), 2) for v in self.box]}
        if self.attributes is not None:
            out["attributes"] = {k: {"label": a.label, "probability": round(a.probability, 4),
                                     **({} if a.positive is None else
                                        {"positive": round(a.positive, 4)})}
                                 for k, a in self.attributes.items()}
        if self.keypoints is not None:
            out["keypoints"] = [[round(float(v), 2) for v in row] for row in self.keypoints]
        if self.parts is not None:
            counts = np.bincount(self.parts.ravel(), minlength=len(self.part_classes))
            fractions = counts / max(1, self.parts.size)
            out["parts_box"] = list(self.parts_box or ())
            out["part_fractions"] = {name: round(float(f), 4) for name, f
                                     in zip(self.part_classes, fractions, strict=False) if f > 0}
        return out


def keypoints_to_image(coords: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Normalised crop coordinates ``(u, v)`` (``...×2``) to image pixel centres.

    Inverse of :func:`crop_matrix` with ``x_c = u * W - 0.5``: ``x = x1 + u * box_w - 0.5``.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    out = np.empty_like(coords, dtype=np.float32)
    out[..., 0] = x1 + coords[..., 0] * (x2 - x1) - 0.5
    out[..., 1] = y1 + coords[..., 1] * (y2 - y1) - 0.5
    return out


def parts_to_box(labels: np.ndarray, box: Sequence[float],
                 max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Nearest-neighbour lookup of an ``H×W`` crop label map onto the box's whole pixels.

    Returns the ``h×w`` map and the integer rectangle ``(x1, y1, x2, y2)`` it covers (the box
    rounded, at least one pixel). With ``max_pixels``, a box with more pixels than that is
    sampled every ``s`` pixels (``s`` the smallest step that fits), so the map stays bounded
    whatever the box's size: each label then stands for an ``s×s`` block of the rectangle.
    """
    h_in, w_in = labels.shape
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    px1, py1 = int(round(x1)), int(round(y1))
    px2, py2 = max(px1 + 1, int(round(x2))), max(py1 + 1, int(round(y2)))
    step = 1
    if max_pixels is not None:
        step = max(1, int(np.sqrt((px2 - px1) * (py2 - py1) / max(1, max_pixels))))
        while -(-(px2 - px1) // step) * -(-(py2 - py1) // step) > max(1, max_pixels):
            step += 1
    cols = (np.arange(px1, px2, step) + step / 2 - x1) * w_in / (x2 - x1) - 0.5
    rows = (np.arange(py1, py2, step) + step / 2 - y1) * h_in / (y2 - y1) - 0.5
    cols = np.clip(np.floor(cols + 0.5), 0, w_in - 1).astype(np.intp)
    rows = np.clip(np.floor(rows + 0.5), 0, h_in - 1).astype(np.intp)
    return labels[np.ix_(rows, cols)], (px1, py1, px2, py2)


class Predictor:
    """Runs the multi-task model on person crops or boxes, on any :mod:`engine
    <personkit.inference.backends>`; pre- and post-processing are the same for every engine.

    Args:
        model: a :class:`~personkit.models.MultiTaskModel` (run by eager PyTorch; any module
            with ``meta`` and ``forward(images, heads=...)`` returning
            :class:`~personkit.models.PersonOutputs`) or an engine
            (:class:`~personkit.inference.backends.OnnxRuntimeEngine`,
            :class:`~personkit.inference.backends.OpenVINOEngine`).
        device: ``cpu``, ``cuda`` or a :class:`torch.device` (torch engine).
        heads: tasks to run, a subset of ``reid, attributes, pose, segmentation`` (default:
            every task the model has). Heads that are off are not computed. Asking for a head
            the model (or the export) lacks is a ValueError.
        flip_tta: average the embedding of each crop with that of its mirror image (raw
            embeddings are averaged, no normalisation; costs one more backbone pass, ReID only).
        merge_parts: map 20 LIP part classes to the paper's 5 merged classes.
        batch_size: crops per forward pass.
        precision: ``fp32``; ``bf16`` (torch autocast on the CPU or CUDA; for an OpenVINO
            engine give it when the engine is made: :meth:`from_checkpoint`,
            :meth:`from_export`); ``fp16`` (torch autocast, CUDA only). Embeddings stay in the
            model's embedding space (the same identity; bf16 moves them by about 0.2-0.3 %).
        channels_last: use the channels-last memory format (torch engine; faster on GPUs).
        calibrations: calibrated same-person thresholds by model identity
            (:mod:`personkit.models.identity`), added to those an export carries;
            :attr:`calibration` picks this predictor's.
        max_part_pixels: the most labels one person's part map may hold (None: one per pixel
            of its box; a service bounds it so a huge box cannot take gigabytes:
            :func:`parts_to_box`).

    Attributes:
        path: the run directory or file :meth:`from_checkpoint` or :meth:`from_export` read,
            as given (None for a model passed in); messages and indexes name the model by it.
    """

    def __init__(self, model: nn.Module | Engine, device: str | torch.device = "auto",
                 heads: Collection[str] | None = None, *, flip_tta: bool = True,
                 merge_parts: bool = False, batch_size: int = 32, precision: str = "fp32",
                 channels_last: bool = False,
                 calibrations: Mapping[str, dict[str, Any]] | None = None,
                 max_part_pixels: int | None = None):
        self.device = resolve_device(device)
        if precision not in PRECISIONS or (precision == "fp16" and self.device.type != "cuda"):
            raise ValueError(f"precision must be one of {PRECISIONS} (fp16 on CUDA only), "
                             f"got {precision!r} on {self.device}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(model, nn.Module):
            model = TorchEngine(model, self.device, precision, channels_last)
        elif channels_last:
            raise ValueError(f"channels_last applies to the torch engine only, not {model.name}")
        elif model.name == "openvino" and precision == "bf16" and model.precision != "bf16":
            warnings.warn("OpenVINO compiled the model for fp32: this CPU has no bf16 "
                          "instructions (avx512_bf16 / amx_bf16)", stacklevel=2)
            precision = "fp32"
        elif precision != model.precision:
            raise ValueError(f"this {model.name} engine runs {model.precision}, not "
                             f"{precision!r}: give the precision when it is made "
                             f"(Predictor.from_checkpoint / from_export)")
        self.engine: Engine = model
        self.calibrations = {**getattr(model, "calibrations", {}), **(calibrations or {})}
        self.meta = model.meta
        source = "this model" if model.name == "torch" else f"this {model.name} export"
        self.heads = select_heads(heads, model.heads, source)
        self.flip_tta, self.batch_size, self.precision = flip_tta, batch_size, precision
        self.channels_last, self.max_part_pixels = channels_last, max_part_pixels
        self._attribute_thresholds: dict[str, float] | None = None
        self._track_thresholds: dict[str, float] | None = None
        self.part_classes = tuple(self.meta.part_classes)
        self.path: str | Path | None = None
        self._merge = merge_parts and len(self.part_classes) == 20
        if self._merge:
            self.part_classes = MERGED5_CLASSES

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto",
                        heads: Collection[str] | None = None, *, engine: str = "torch",
                        threads: int | None = None, **kwargs: Any) -> Predictor:
        """A predictor for a run directory, ``.pt`` checkpoint or ``.safetensors`` export, on
        ``engine`` (``torch``, ``onnxruntime`` or ``openvino``; the latter two export the model
        to a temporary file first), or for an exported ``.onnx``/OpenVINO file (then see
        :meth:`from_export`).

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        given, path = path, Path(path)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if is_export(path):
            return cls.from_export(given, engine=None if engine == "torch" else engine,
                                   device=device, heads=heads, threads=threads, **kwargs)
        model = load_model(path, "cpu")
        kwargs.setdefault("calibrations", read_calibrations(path))
        if engine == "torch":
            predictor = cls(model, resolve_device(device), heads, **kwargs)
        else:
            from personkit.inference.export import engine_from_model

            device = _engine_device(device, engine)
            runner = engine_from_model(model, engine, heads, device, threads,
                                       kwargs.get("precision", "fp32"))
            predictor = cls(runner, device, heads, **kwargs)
        predictor.path = given
        return predictor

    @classmethod
    def from_export(cls, path: str | Path, engine: str | None = None,
                    device: str | torch.device = "auto", heads: Collection[str] | None = None,
                    threads: int | None = None, **kwargs: Any) -> Predictor:
        """A predictor for a ``personkit export`` file: ``.onnx`` (ONNX Runtime, or OpenVINO
        with ``engine="openvino"``) or an OpenVINO ``model.xml`` or its folder. The file's
        metadata gives the input size, mean/std, names and heads."""
        runner = open_export(path, engine, _engine_device(device, engine or ""), threads,
                             kwargs.get("precision", "fp32"))
        predictor = cls(runner, _engine_device(device, runner.name), heads, **kwargs)
        predictor.path = path
        return predictor

    @property
    def model_id(self) -> str | None:
        """The identity of the embedding space of this predictor's embeddings
        (:func:`~personkit.inference.contract.model_identity`; None if unknown)."""
        return model_identity(self.meta, self.engine.weights_hash, self.flip_tta)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """This predictor's calibrated same-person threshold (``threshold``, ``precision``,
        ``recall``, ``dataset``, ...: :mod:`personkit.metrics.matching`), written by
        ``personkit eval`` for these weights and flip setting; None when none was."""
        model_id = self.model_id
        return self.calibrations.get(model_id) if model_id else None

    @property
    def attribute_thresholds(self) -> dict[str, float]:
        """Each binary attribute's calibrated decision threshold on its class-1 probability
        for one crop (``personkit eval``: the one that maximises balanced accuracy, stored as
        ``attribute_thresholds`` in ``calibration.json`` for these weights, whatever the flip
        setting); empty when none was calibrated (decisions are then the arg-max)."""
        if self._attribute_thresholds is None:
            self._attribute_thresholds = self._thresholds("attribute_thresholds")
        return self._attribute_thresholds

    @property
    def track_attribute_thresholds(self) -> dict[str, float]:
        """The decision thresholds for a track's mean probabilities (what tracks and index
        entries are decided on): ``track_attributes`` in ``calibration.json``, fitted on
        track means (:mod:`personkit.track.calibrate`), each attribute it lacks
        from :attr:`attribute_thresholds`."""
        if self._track_thresholds is None:
            self._track_thresholds = {**self.attribute_thresholds,
                                      **self._thresholds("track_attributes", "thresholds")}
        return self._track_thresholds

    def _thresholds(self, *keys: str) -> dict[str, float]:
        """The thresholds under ``keys`` (a path into the record) of this model's
        calibration record (or of a record for the same weights with another flip setting);
        empty, with a warning when the file holds another model's, when none was
        calibrated."""
        key = keys[0]

        def held(r: dict[str, Any] | None) -> dict[str, Any]:
            for k in keys:
                r = (r or {}).get(k) or {}
            return r

        record = self.calibration
        if not held(record):
            weights = self.engine.weights_hash
            record = next((r for r in self.calibrations.values()
                           if weights and r.get("weights") == weights and held(r)), None)
        others = [k for k, r in self.calibrations.items() if held(r)]
        if record is None and others:
            warnings.warn(f"the calibration file holds {key} of model(s) {', '.join(others)}, "
                          f"not of this model ({self.model_id}): they are not used; run "
                          f"`personkit eval` on this model", stacklevel=3)
        return {k: float(v) for k, v in held(record).items()}

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta.input_size)  # type: ignore[return-value]

    def predict_crops(self, images: Sequence[Any]) -> list[PersonResult]:
        """Predict on whole person crops; keypoints are in each crop's own pixels."""
        return [r for people in self.predict_many([(image, None) for image in images])
                for r in people]

    def predict(self, image: Any, boxes: Any) -> list[PersonResult]:
        """Predict on ``N`` boxes (``x1, y1, x2, y2`` in image pixels) of one image.

        An empty box list gives an empty result list. Boxes are clipped to the image; a box
        with no area inside it is a ValueError naming its index.
        """
        return self.predict_many([(image, boxes)])[0]

    def predict_many(self, items: Sequence[tuple[Any, Any]],
                     stop: Callable[[], bool] | None = None) -> list[list[PersonResult]]:
        """The people of several images in shared forward passes (``batch_size`` crops each):
        ``items`` are ``(image, boxes)`` pairs as for :meth:`predict`, ``boxes`` None for an
        image that is one person crop (:meth:`predict_crops`). Results are per item; the one
        place images become crops and crops become results. Crops are cut one batch at a
        time, so memory does not grow with the number of boxes.

        Raises:
            PredictionStopped: ``stop()`` was true before a forward pass (a server stopping).
        """
        people: list[tuple[np.ndarray, np.ndarray]] = []
        counts = []
        for image, item_boxes in items:
            image = to_rgb_uint8(image)
            if item_boxes is None:
                item_boxes = [(0.0, 0.0, float(image.shape[1]), float(image.shape[0]))]
            item_boxes = clip_boxes(item_boxes, image.shape[1], image.shape[0]).reshape(-1, 4)
            people += [(image, box) for box in item_boxes]
            counts.append(len(item_boxes))
        flat = self._run(people, stop)
        return [flat[s - n:s] for s, n in zip(np.cumsum(counts), counts, strict=True)]

    def _run(self, people: list[tuple[np.ndarray, np.ndarray]],
             stop: Callable[[], bool] | None = None) -> list[PersonResult]:
        results: list[PersonResult] = []
        for start in range(0, len(people), self.batch_size):
            if stop is not None and stop():
                raise PredictionStopped(f"stopped after {start} of {len(people)} people")
            chunk = people[start:start + self.batch_size]
            outputs = self.forward(np.stack([crop_box(image, box, self.input_size)
                                             for image, box in chunk]))
            results += [self._result(outputs, i, box) for i, (_, box) in enumerate(chunk)]
        return results

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """``B×H×W×3`` uint8 crops -> the normalised ``B×3×H×W`` float32 network input."""
        return normalise(crops, self.meta.mean, self.meta.std)

    def forward(self, crops: np.ndarray) -> dict[str, Any]:
        """Raw outputs for a ``B×H×W×3`` uint8 batch already at the input size, as numpy:
        ``embedding`` B×D, ``attributes`` name -> B×C probabilities, ``keypoints`` B×J×2
        normalised, ``keypoint_scores`` B×J, ``parts`` B×H×W uint8 labels."""
        x = self.normalise(crops)
        raw = self.engine.run(x, self.heads)
        if self.flip_tta and "reid" in self.heads:
            mirror = self.engine.run(np.ascontiguousarray(x[..., ::-1]), ("reid",))
            raw["embedding"] = mean_with_mirror(raw["embedding"], mirror["embedding"])
        return decode_outputs(raw, self.meta)

    def _result(self, outputs: dict[str, Any], i: int, box: np.ndarray) -> PersonResult:
        r = PersonResult(box=tuple(float(v) for v in box))  # type: ignore[arg-type]
        if "embedding" in outputs:
            r.embedding = outputs["embedding"][i].astype(np.float32)
        if "attributes" in outputs:
            thresholds = self.attribute_thresholds
            r.attributes = {}
            for name, probs in outputs["attributes"].items():
                p = probs[i]
                k = (int(p[1] >= thresholds[name]) if len(p) == 2 and name in thresholds
                     else int(p.argmax()))
                names = self.meta.attributes.get(name, ())
                label = names[k] if k < len(names) else str(k)
                r.attributes[name] = AttributePrediction(label, float(p[k]),
                                                         tuple(float(v) for v in p))
        if "keypoints" in outputs:
            xy = keypoints_to_image(outputs["keypoints"][i], box)
            r.keypoints = np.concatenate([xy, outputs["keypoint_scores"][i][:, None]], axis=1)
        if "parts" in outputs:
            labels = outputs["parts"][i]
            if self._merge:
                labels = LIP_TO_MERGED5[labels]
            r.parts, r.parts_box = parts_to_box(labels, box, self.max_part_pixels)
            r.part_classes = self.part_classes
        return r


def _engine_device(device: str | torch.device, engine: str) -> str:
    """``cpu`` or ``cuda`` for an export engine; ``auto`` is the CPU for OpenVINO (which runs
    on the CPU here) and CUDA elsewhere when a GPU is visible."""
    if str(device) == "auto" and engine == "openvino":
        return "cpu"
    return resolve_device(device).type


def decode_outputs(raw: dict[str, np.ndarray], meta: Any) -> dict[str, Any]:
    """Engine outputs (export names) -> :meth:`Predictor.forward`'s: attribute softmax
    probabilities and part labels (the arg-max of the logits unless the engine gave labels)."""
    result: dict[str, Any] = {}
    if "embedding" in raw:
        result["embedding"] = np.asarray(raw["embedding"], np.float32)
    attributes = {name: raw[attribute_output(name)] for name in meta.attributes
                  if attribute_output(name) in raw}
    if attributes:
        result["attributes"] = {k: _softmax(v) for k, v in attributes.items()}
    if "keypoints" in raw:
        result["keypoints"] = np.asarray(raw["keypoints"], np.float32)
        result["keypoint_scores"] = np.asarray(raw["keypoint_scores"], np.float32)
    if "part_labels" in raw:
        result["parts"] = raw["part_labels"]
    elif "parts" in raw:
        result["parts"] = raw["parts"].argmax(axis=1).astype(np.uint8)
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


