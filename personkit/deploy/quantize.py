"""int8 post-training quantization of personkit exports: ONNX Runtime static quantization
(QDQ, per-channel int8 weights, uint8 activations) for ``.onnx`` files and NNCF for OpenVINO IRs,
calibrated on crops from any personkit dataset folder.

The trunk, the FPN and the segmentation branch are quantized. Kept in fp32 because their
outputs are read as numbers, not just ranked: the pose head (its final 1×1 heatmap conv and the
soft-argmax decoding, whose expectation over a softmax amplifies logit errors), the
segmentation logits (the final 1×1 classifier conv and the upsampling to the input size) and
the attribute classifiers (tiny linear layers on the embedding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch import nn

from personkit.data.mot import IMAGE_EXTENSIONS
from personkit.extras import quiet, require, verbose
from personkit.inference.backends import (
    open_export,
    openvino_xml,
    read_openvino_metadata,
    save_openvino,
)
from personkit.inference.contract import (
    ExportWrapper,
    output_names,
    select_heads,
)
from personkit.inference.preprocess import crop_box, normalise

#: Human-readable list of the parts kept in fp32 (printed by ``personkit export --int8``).
FP32_PARTS = ("pose 1x1 conv + soft-argmax", "segmentation logits conv + upsampling",
              "attribute classifiers")
#: Node-name patterns (regular expressions) of those parts in the exported graph.
FP32_PATTERNS = (r".*/model/pose/.*", r".*/model/segmentation/predictor/.*",
                 r".*/model/attributes/.*", r".*/model/Resize.*")
#: NNCF's preset for OpenVINO int8: ``performance`` (symmetric activations: no zero-point
#: compensation in the VNNI/AMX kernels) ran the ResNet-50 GN trunk 20-23 % faster than
#: ``mixed`` with the same accuracy on every protocol (benchmarks/RESULTS.md, issue 27).
NNCF_PRESET = "performance"
#: Only these op types are quantized (everything else stays fp32: GroupNorm, softmax, resize).
INT8_OPS = ("Conv", "Gemm", "MatMul")
#: Relative RMS error bound of the int8 parity check (derivation: :func:`check_int8`).
INT8_TOL = 0.25


def calibration_batch(root: str | Path | Sequence[Path], meta: Any, size: int = 300,
                      seed: int = 0, log: Callable[[str], None] | None = None) -> np.ndarray:
    """``size`` normalised ``N×3×H×W`` float32 calibration crops from the colour images under
    ``root`` (searched recursively; or ``root`` a list of image files), a seeded random
    sample, each resized whole to the model's input size as :meth:`Predictor.predict_crops`
    does. Single-channel images (label maps such as LIP's segmentations) are not photos and
    are left out, with a count in ``log``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no colour images under ``root``, or ``size < 1``.
    """
    if isinstance(root, (str, Path)):
        files, where = calibration_files(root), str(root)
    else:
        files = list(root)
        where = f"the {len(files)} given image files"
    if size < 1:
        raise ValueError(f"calibration size must be >= 1, got {size}")
    order = np.random.default_rng(seed).permutation(len(files))
    crops, gray = [], 0
    h, w = meta.input_size
    for i in order:
        image = cv2.imread(str(files[i]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"cannot read calibration image {files[i]}")
        if image.ndim == 2 or image.shape[2] == 1:
            gray += 1
            continue
        rgb = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
        crops.append(crop_box(rgb, (0, 0, rgb.shape[1], rgb.shape[0]), (h, w)))
        if len(crops) == size:
            break
    if not crops:
        raise ValueError(f"no colour images in calibration data {where} ({gray} "
                         f"single-channel images such as label maps were left out)")
    if log:
        log(f"calibrating on {len(crops)} crops from {where} ({len(files)} image files; "
            f"{gray} single-channel label maps left out)")
    return normalise(np.stack(crops), meta.mean, meta.std)


def calibration_files(root: str | Path) -> list[Path]:
    """The image files under the calibration folder ``root`` (searched recursively).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no images under it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under calibration folder "
                         f"{root}")
    return files


def int8_path(path: str | Path) -> Path:
    """Where the int8 copy of an export goes: ``model.int8.onnx`` next to ``model.onnx``, or
    the folder ``DIR-int8`` next to an OpenVINO folder ``DIR``."""
    path = Path(path)
    if path.suffix == ".onnx":
        return path.with_suffix(".int8.onnx")
    folder = path.parent if path.suffix == ".xml" else path
    return folder.with_name(folder.name + "-int8") / "model.xml"


def quantize_export(path: str | Path, calib: np.ndarray, out: str | Path | None = None,
                    keep_fp32: Sequence[str] = (), preset: str = NNCF_PRESET) -> Path:
    """Quantize an fp32 export (``.onnx`` with ONNX Runtime, OpenVINO with NNCF) to int8;
    ``keep_fp32``: node-name patterns (regular expressions) kept in fp32 on top of
    :data:`FP32_PATTERNS`, e.g. ``.*/backbone/stem/.*``; ``preset``: NNCF's (OpenVINO only,
    :func:`quantize_openvino`)."""
    path = Path(path)
    out = Path(out) if out is not None else int8_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".onnx":
        return quantize_onnx(path, out, calib, keep_fp32)
    return quantize_openvino(path, out, calib, keep_fp32, preset)


def quantize_onnx(path: Path, out: Path, calib: np.ndarray, keep_fp32: Sequence[str] = ()
                  ) -> Path:
    """ONNX Runtime static quantization (QDQ; per-channel symmetric int8 weights, uint8
    activations with min/max calibration); the :data:`FP32_PATTERNS` nodes are excluded."""
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    proto = onnx.load(str(path))
    exclude = [n.name for n in proto.graph.node if _matches(n.name, keep_fp32)]

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{proto.graph.input[0].name: calib[i:i + 1]}
                               for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with quiet():
        q.quantize_static(str(path), str(out), Reader(), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          per_channel=True, op_types_to_quantize=list(INT8_OPS),
                          nodes_to_exclude=exclude)
    quantized = onnx.load(str(out))  # keep the personkit metadata
    onnx.helper.set_model_props(quantized, {p.key: p.value for p in proto.metadata_props})
    onnx.save(quantized, str(out))
    return out


def quantize_openvino(path: Path, out: Path, calib: np.ndarray, keep_fp32: Sequence[str] = (),
                      preset: str = NNCF_PRESET) -> Path:
    """NNCF post-training quantization of an OpenVINO IR (the :data:`FP32_PATTERNS` nodes and
    every non-``INT8_OPS`` op are ignored); ``preset`` :data:`NNCF_PRESET` (``performance``:
    symmetric weights and activations) or ``mixed`` (asymmetric activations)."""
    ov = require("openvino")
    with quiet():  # its import logs torch extension notices
        nncf = require("nncf")
    xml = openvino_xml(path)
    model = ov.Core().read_model(str(xml))
    props = read_openvino_metadata(model)  # kept as they are: same heads, same source weights
    dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    ignored = nncf.IgnoredScope(patterns=[*FP32_PATTERNS, *keep_fp32], validate=False)
    with quiet():
        nncf.set_log_level(logging.ERROR if not verbose() else logging.INFO)
        quantized = nncf.quantize(model, dataset, subset_size=len(calib),
                                  ignored_scope=ignored,
                                  preset=nncf.QuantizationPreset(preset))
    return save_openvino(quantized, out.parent, props)


def _matches(name: str, extra: Sequence[str] = ()) -> bool:
    import re

    return any(re.fullmatch(p, name) for p in (*FP32_PATTERNS, *extra))


@dataclass
class Int8Report:
    """Relative RMS error ``||int8 - fp32|| / ||fp32||`` of each output against eager PyTorch
    fp32, and the share of pixels whose part label agrees; ``ok`` when every error is
    ``<= tol``."""

    rel_rms: dict[str, float] = field(default_factory=dict)
    parts_agreement: float | None = None
    tol: float = INT8_TOL

    @property
    def ok(self) -> bool:
        return all(v <= self.tol for v in self.rel_rms.values())

    def summary(self) -> str:
        lines = [f"{'output':<24}{'relative RMS error':>20}"]
        lines += [f"{n:<24}{v:>20.3e}" for n, v in self.rel_rms.items()]
        if self.parts_agreement is not None:
            lines.append(f"part labels agreeing with fp32: {self.parts_agreement:.1%}")
        lines.append(f"int8 parity {'PASS' if self.ok else 'FAIL'}: worst relative RMS error "
                     f"{max(self.rel_rms.values(), default=0):.3e} (tolerance {self.tol})")
        return "\n".join(lines)


def check_int8(model: nn.Module, path: str | Path, calib: np.ndarray,
               heads: Collection[str] | None = None, tol: float = INT8_TOL,
               count: int = 16) -> Int8Report:
    """Compare an int8 export with the fp32 PyTorch model on ``count`` calibration crops (random
    noise lies outside the calibrated ranges and says nothing about real inputs).

    ``tol`` (:data:`INT8_TOL`) bounds the relative RMS error of every output. Each quantized
    layer adds rounding noise of ``step/sqrt(12)``, with ``step = range/255``; for activations
    whose range is ~8x their RMS that is ~1 % of the signal per layer, and ~20 quantized layers
    in series (ResNet-18 trunk + FPN) add in quadrature to ~5 %. Small outputs of an untrained
    net (attribute logits near 0) are differences of large activations and amplify this a few
    times, hence 0.25: a sanity bound that a wrong scale or zero point (error ~1) fails. The
    accuracy of a trained int8 model is measured with the official protocols instead.
    """
    import torch

    heads = select_heads(heads, model.meta.heads, "this model (to compare)")
    x = np.ascontiguousarray(calib[:count])
    with torch.inference_mode():
        ref = [t.float().numpy() for t in ExportWrapper(model, heads).eval().cpu()(
            torch.from_numpy(x))]
    got = open_export(path).run(x, heads)
    report = Int8Report(tol=tol)
    for name, r in zip(output_names(model.meta, heads), ref, strict=True):
        err = float(np.linalg.norm(got[name] - r) / max(float(np.linalg.norm(r)), 1e-12))
        report.rel_rms[name] = err
    if "parts" in got:
        report.parts_agreement = float((got["parts"].argmax(1) == ref[-1].argmax(1)).mean())
    return report
