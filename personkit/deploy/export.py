"""``personkit export``: a checkpoint written as ONNX and/or OpenVINO files
(:mod:`personkit.inference.export` writes them), each checked against eager PyTorch
(:func:`check_parity`) and, with int8, their quantized copies (:mod:`personkit.deploy.quantize`)
and those copies' parity; a ``personkit train-detector`` model as ONNX, checked on rendered
frames (:func:`export_detector`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from personkit.deploy import quantize
from personkit.inference.backends import open_export
from personkit.inference.contract import ExportWrapper, output_names, select_heads
from personkit.inference.export import DEFAULT_OPSET, export_onnx, export_openvino
from personkit.models.detector import is_detector_file
from personkit.models.identity import read_calibrations
from personkit.models.loading import load_model
from personkit.models.numerics import fp32_tolerance, relative_difference


@dataclass
class ParityReport:
    """Max |ONNX - PyTorch| per output over the checked batch sizes, and the same relative
    to the output's largest magnitude; ``ok`` when every relative difference is ``<= tol``
    (by default the model's float32 rounding bound)."""

    max_abs: dict[str, float] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = ()
    tol: float = 1e-4

    @property
    def ok(self) -> bool:
        return all(v <= self.tol for v in self.max_rel.values())

    @property
    def worst_rel(self) -> float:
        return max(self.max_rel.values(), default=0.0)

    def summary(self) -> str:
        lines = [f"{'output':<24}{'max abs diff':>14}{'relative':>12}"]
        lines += [f"{n:<24}{self.max_abs[n]:>14.3e}{self.max_rel[n]:>12.3e}"
                  for n in self.max_abs]
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"parity {verdict}: worst relative difference {self.worst_rel:.3e} "
                     f"(tolerance {self.tol:.1e}), batch sizes {list(self.batch_sizes)}")
        return "\n".join(lines)


def check_parity(model: nn.Module, path: str | Path, heads: Collection[str] | None = None,
                 batch_sizes: Sequence[int] = (2, 3), tol: float | None = None, seed: int = 0,
                 engine: str | None = None, inputs: np.ndarray | None = None) -> ParityReport:
    """Run PyTorch and an engine on the same random normalised batches and compare.

    ``path`` is an ``.onnx`` file (ONNX Runtime by default) or an OpenVINO export (OpenVINO);
    ``engine`` picks explicitly. A batch size other than the export's (2) checks the dynamic
    axis. ``inputs`` (normalised ``N×3×H×W``) replaces the random batches: they are split
    into ``batch_sizes`` chunks. The model is moved to the CPU. ``tol`` defaults to the
    model's float32 rounding bound (:func:`~personkit.models.numerics.fp32_tolerance`).
    """
    heads = select_heads(heads, model.meta.heads, "this model (to export)")
    wrapper = ExportWrapper(model, heads).eval().cpu()
    names = output_names(model.meta, heads)
    runner = open_export(path, engine)
    got_names = [n for n in runner.outputs if n in names]
    if got_names != names:
        raise ValueError(f"{path} has outputs {runner.outputs}, expected {names}")
    meta = model.meta
    h, w = meta.input_size
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.std).view(1, 3, 1, 1)
    report = ParityReport(batch_sizes=tuple(batch_sizes),
                          tol=fp32_tolerance(model) if tol is None else tol)
    start = 0
    for b in batch_sizes:
        if inputs is not None:
            x, start = torch.from_numpy(np.ascontiguousarray(inputs[start:start + b])), start + b
        else:
            x = (torch.rand(b, 3, h, w, generator=gen) - mean) / std
        with torch.inference_mode():
            ref = [t.float().numpy() for t in wrapper(x)]
        got = runner.run(x.numpy(), heads)
        for name, r in zip(names, ref, strict=True):
            o = got[name]
            if r.shape != o.shape:
                raise ValueError(f"output {name}: engine shape {o.shape} != PyTorch {r.shape}")
            diff = float(np.abs(r - o).max()) if r.size else 0.0
            report.max_abs[name] = max(report.max_abs.get(name, 0.0), diff)
            report.max_rel[name] = max(report.max_rel.get(name, 0.0), relative_difference(r, o))
    return report


def export_model(model: nn.Module | str | Path, onnx: str | Path | None = None,
                 openvino: str | Path | None = None, heads: Collection[str] | None = None, *,
                 opset: int = DEFAULT_OPSET, tol: float | None = None, check: bool = True,
                 int8: bool = False, calib_data: str | Path | None = None,
                 calib_size: int = 300, log: Callable[[str], None] = print) -> bool:
    """``personkit export``: ``model`` (or the run dir, checkpoint or weights file it names,
    read after the arguments are checked) written to ``onnx`` and/or the OpenVINO folder
    ``openvino``, each checked
    against PyTorch (``check``), and with ``int8`` their int8 copies calibrated on
    ``calib_size`` crops of ``calib_data``, with the int8 parity; returns whether every check
    passed. Progress and reports go to ``log``."""
    if not (onnx or openvino):
        raise ValueError("give an ONNX file (--onnx FILE) and/or an OpenVINO folder "
                         "(--openvino DIR)")
    if int8 and not calib_data:
        raise ValueError("--int8 needs --calib-data ROOT (a folder of images to calibrate on)")
    calibrations = None
    if not isinstance(model, nn.Module) and is_detector_file(model):
        if openvino or int8:
            raise ValueError(f"{model} is a person detector: it exports to ONNX only (--onnx)")
        return export_detector(model, onnx, check, tol, log=log)
    if not isinstance(model, nn.Module):
        calibrations = read_calibrations(model)  # the same-person thresholds travel along
        model = load_model(model, "cpu")
    written = []
    if onnx:
        written.append(export_onnx(model, onnx, heads, opset=opset, calibrations=calibrations))
    if openvino:
        written.append(export_openvino(model, openvino, heads, onnx_path=onnx or None,
                                       opset=opset, calibrations=calibrations))
    for path in written:
        log(f"wrote {path}")
    ok = True
    if check:
        for path in written:
            report = check_parity(model, path, heads, tol=tol)
            log(f"{path}:\n{report.summary()}")
            ok &= report.ok
    if int8:
        calib = quantize.calibration_batch(calib_data, model.meta, calib_size, log=log)
        for path in written:
            out = quantize.quantize_export(path, calib)
            log(f"wrote {out} (int8; kept in fp32: {', '.join(quantize.FP32_PARTS)})")
            if check:
                report = quantize.check_int8(model, out, calib, heads)
                log(report.summary())
                ok &= report.ok
    return ok


def export_detector(path: str | Path, onnx_path: str | Path, check: bool = True,
                    tol: float | None = None, frames: Sequence[np.ndarray] | None = None,
                    log: Callable[[str], None] = print) -> bool:
    """Write a ``personkit train-detector`` model as ONNX in the torchvision layout
    :class:`~personkit.inference.detectors.OnnxDetector` reads (one ``[3, H, W]`` RGB frame in
    [0, 1] with dynamic H and W; ``boxes``, ``labels``, ``scores`` out, resizing and NMS inside)
    and, with ``check``, compare ONNX Runtime with PyTorch on ``frames`` (default: synthetic
    ``tiny`` frames): returns whether every box and score agrees within ``tol`` (default:
    the model's float32 rounding bound; boxes relative to the frame size)."""
    from personkit.models.detector import load_person_detector, write_detector_onnx

    model, config = load_person_detector(path)
    onnx_path = write_detector_onnx(model, config, onnx_path, DEFAULT_OPSET)
    log(f"wrote {onnx_path}")
    if not check:
        return True
    return _detector_parity(model, onnx_path, frames, tol, log)


def _detector_parity(model: nn.Module, onnx_path: Path, frames: Sequence[np.ndarray] | None,
                     tol: float | None, log: Callable[[str], None]) -> bool:
    from personkit.inference.detectors import OnnxDetector
    from personkit.models.detector import TorchvisionDetector

    if frames is None:  # three frames of a synthetic street, with people
        from personkit.data.io import read_image
        from personkit.synth.mot import write_mot_sequence

        with tempfile.TemporaryDirectory() as tmp:
            seq = write_mot_sequence(Path(tmp) / "parity", "tiny", seed=0)
            frames = [read_image(p) for p in sorted((seq / "img1").iterdir())[::4]]
    tol = fp32_tolerance(model) if tol is None else tol
    ref = TorchvisionDetector("torch", model=model, min_score=0.0).detect(frames)
    got = OnnxDetector(onnx_path, min_score=0.0).detect(frames)
    worst, ok = 0.0, True
    for frame, a, b in zip(frames, ref, got, strict=True):
        scale = float(max(frame.shape[:2]))
        # a box whose score lies within tol of the model's threshold may pass on one side only
        a, b = (x[x[:, 4] > model.score_thresh + tol] for x in (a, b))
        if len(a) != len(b):
            log(f"detector parity FAIL: {len(a)} boxes in PyTorch, {len(b)} in ONNX Runtime")
            return False
        if len(a):
            diff = np.abs(a - b) / np.array([scale] * 4 + [1.0])
            worst = max(worst, float(diff.max()))
            ok &= bool(diff.max() <= tol)
    log(f"detector parity {'PASS' if ok else 'FAIL'}: worst difference {worst:.2e} (boxes "
        f"relative to the frame size, scores absolute; tolerance {tol:.1e}) on {len(frames)} "
        f"frames, {sum(len(r) for r in ref)} boxes")
    return ok
