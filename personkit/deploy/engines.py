"""Evaluation of exports (``personkit eval``): :class:`EngineModel` runs the official
evaluation through ONNX Runtime, OpenVINO and int8 exports. The backends themselves
(:class:`~personkit.inference.backends.TorchEngine`,
:class:`~personkit.inference.backends.OnnxRuntimeEngine`,
:class:`~personkit.inference.backends.OpenVINOEngine`,
:func:`~personkit.inference.backends.open_export`) live in :mod:`personkit.inference.backends`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from personkit.deploy.quantize import (
    FP32_PARTS,
    NNCF_PRESET,
    calibration_batch,
    calibration_files,
    quantize_export,
)
from personkit.engine.evaluate import run_evaluation, save_match_calibration
from personkit.extras import require
from personkit.inference.backends import ENGINES, Engine, TorchEngine, open_export
from personkit.inference.contract import TASKS, person_outputs, select_heads
from personkit.inference.export import export_onnx, export_openvino
from personkit.models import ModelMeta, PersonOutputs
from personkit.models.loading import load_model_and_config
from personkit.runtime import resolve_device


class EngineModel:
    """An engine that looks like a :class:`~personkit.models.MultiTaskModel` to personkit's
    evaluation code (:func:`personkit.engine.evaluate.run_evaluation`), so the official
    protocols run unchanged, without a second copy, on ONNX Runtime, OpenVINO and int8 exports.

    ``model(images, heads=...)`` returns :class:`~personkit.models.PersonOutputs` with the
    fields evaluation reads: ``embedding``, ``attributes`` (logits), ``keypoints``,
    ``keypoint_scores`` and ``parts`` (logits at the input size; one-hot scores when an engine
    gives only the arg-max, which evaluation takes again). :meth:`__call__` is the one place
    where tensors become the engine's numpy input and its outputs become tensors again.

    An export has a fixed input size while evaluation sets may use other sizes than the
    model's (the demo: Market 128×64, MPII and LIP 96×96), so ``engine_for`` gives the engine
    for an input size (H, W); each is made on first use and kept.

    Args:
        engine_for: input size -> engine for that size.
        meta: the model's metadata (attribute and part class names).
        heads: the tasks the engines can run (``model.enabled``).
        name: shown in errors, e.g. ``onnxruntime int8``.
    """

    def __init__(self, engine_for: Callable[[tuple[int, int]], Engine], meta: ModelMeta,
                 heads: Sequence[str], name: str, precision: str = "fp32"):
        self.engine_for, self.meta, self.name = engine_for, meta, name
        self.precision = precision  # asked for; an engine may fall back (warned once)
        self.enabled = tuple(t for t in TASKS if t in heads)
        self.engines: dict[tuple[int, int], Engine] = {}
        self._tmp: tempfile.TemporaryDirectory | None = None  # exports made for evaluation

    def eval(self) -> EngineModel:
        """No-op (evaluation code calls ``model.eval()``)."""
        return self

    def engine(self, size: tuple[int, int]) -> Engine:
        """The engine for ``(H, W)`` inputs (made on first use)."""
        size = (int(size[0]), int(size[1]))
        if size not in self.engines:
            engine = self.engine_for(size)
            fell_back = engine.precision != self.precision
            if fell_back and all(e.precision == self.precision for e in self.engines.values()):
                warnings.warn(f"{self.name}: asked for {self.precision}, the engine runs "
                              f"{engine.precision} (this CPU has no bf16 instructions: "
                              f"avx512_bf16 / amx_bf16)", stacklevel=2)  # once per model
            self.engines[size] = engine
        return self.engines[size]

    def __call__(self, images: torch.Tensor, heads: Collection[str] | None = None
                 ) -> PersonOutputs:
        """Run the engine on a normalised ``B×3×H×W`` batch; outputs on ``images.device``."""
        heads = select_heads(heads, self.enabled, self.name)
        engine = self.engine(tuple(images.shape[-2:]))
        raw = engine.run(np.ascontiguousarray(images.detach().float().cpu().numpy()), heads)
        out = person_outputs({k: torch.from_numpy(v).to(images.device) for k, v in raw.items()},
                             self.meta, heads)
        missing = [h for h, v in (("reid", out.embedding), ("pose", out.keypoints),
                                  ("segmentation", out.parts)) if h in heads and v is None]
        if missing:
            raise ValueError(f"{self.name} returned no output for heads {missing}")
        return out

    @classmethod
    def from_torch(cls, model: nn.Module, device: torch.device, precision: str) -> EngineModel:
        """Evaluate ``model`` itself through :class:`TorchEngine` at ``precision`` (bf16:
        autocast), any input size."""
        runner = TorchEngine(model.eval(), device, precision)
        return cls(lambda size: runner, model.meta, runner.heads, f"torch {precision}",
                   precision)

    @classmethod
    def from_export(cls, path: str | Path, engine: str | None = None,
                    threads: int | None = None, precision: str = "fp32") -> EngineModel:
        """Evaluate an exported file (``.onnx``, int8 ``.onnx``, OpenVINO folder or ``.xml``);
        it runs only the input size it was exported for (``precision``: see
        :func:`open_export`)."""
        runner = open_export(path, engine, threads=threads, precision=precision)
        own = tuple(runner.meta.input_size)

        def engine_for(size: tuple[int, int]) -> Engine:
            if size != own:
                raise ValueError(
                    f"{path} was exported for {own[0]}x{own[1]} inputs, but an evaluation set "
                    f"is read at {size[0]}x{size[1]}: evaluate the checkpoint with --engine "
                    f"(one export per input size) or pick sets of that size with --datasets")
            return runner

        return cls(engine_for, runner.meta, runner.heads, f"{runner.name} ({path})",
                   precision)

    @classmethod
    def from_model(cls, model: nn.Module, engine: str, *, int8: bool = False,
                   calib_data: str | Path | None = None, calib_size: int = 300,
                   keep_fp32: Sequence[str] = (), threads: int | None = None,
                   log: Callable[[str], None] | None = None,
                   precision: str = "fp32", int8_preset: str = NNCF_PRESET) -> EngineModel:
        """Evaluate ``model`` through ``engine`` (``onnxruntime`` or ``openvino``): for each
        input size, an fp32 export as ``personkit export`` writes it and, with ``int8``, its
        int8 copy calibrated on ``calib_size`` crops of ``calib_data`` at that size
        (:mod:`personkit.deploy.quantize`; ``keep_fp32``: more node-name patterns kept in
        fp32). ``precision`` ``bf16`` (OpenVINO): what is not int8 runs in bf16;
        ``int8_preset``: NNCF's preset (OpenVINO, :data:`NNCF_PRESET` by default)."""
        if engine not in ENGINES[1:]:
            raise ValueError(f"engine must be one of {ENGINES[1:]}, got {engine!r}")
        if int8 and calib_data is None:
            raise ValueError("int8 needs calibration data (--calib-data ROOT, a folder of "
                             "images)")
        require(engine)
        model = model.cpu().eval()
        heads = tuple(t for t in TASKS if t in model.enabled)
        name = f"{engine} {'int8' if int8 else 'fp32'}" + (
            f" ({precision})" if precision != "fp32" else "")
        result = cls(lambda size: _export_for(result, model, engine, size, int8, calib_data,
                                              calib_size, keep_fp32, threads, log, precision,
                                              int8_preset),
                     model.meta, heads, name, precision)
        result._tmp = tempfile.TemporaryDirectory(prefix="personkit-eval-")
        return result


def evaluate_checkpoint(checkpoint: str | Path, datasets: Sequence[str] | None = None,
                        data_root: str | Path | None = None, *, device: str = "auto",
                        batch_size: int = 64, flip_tta: bool = True, engine: str = "torch",
                        export: str | Path | None = None, int8: bool = False,
                        calib_data: str | Path | None = None, calib_size: int = 300,
                        threads: int | None = None,
                        precision: str = "fp32") -> dict[str, dict[str, Any]]:
    """``personkit eval``: the run's ``data.eval`` sets (or those named) scored with the
    official protocols on the checkpoint, through ``engine`` or on the exported ``export``
    at ``precision`` (see :func:`evaluation_model`); the options are checked before the model
    is read."""
    check_evaluation_options(engine, export, int8, calib_data, precision)
    where = resolve_device(device, "--device")
    model, cfg = load_model_and_config(checkpoint, where)
    model = evaluation_model(model, engine, export=export, int8=int8, calib_data=calib_data,
                             calib_size=calib_size, threads=threads, precision=precision,
                             device=where)
    on_torch = engine == "torch" and not export
    results = run_evaluation(model, cfg, datasets, data_root, device=where if on_torch else "cpu",
                             batch_size=batch_size, flip_tta=flip_tta)
    if on_torch and precision == "fp32":  # the fp32 model's space: what track --gallery uses
        save_match_calibration(results, model, checkpoint, flip_tta)
    return results


def check_evaluation_options(engine: str = "torch", export: str | Path | None = None,
                             int8: bool = False, calib_data: str | Path | None = None,
                             precision: str = "fp32") -> None:
    """:func:`evaluation_model`'s options make sense together (a ``ValueError`` otherwise)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    if precision == "bf16" and engine == "onnxruntime":
        raise ValueError("--precision bf16 runs on --engine torch (autocast) or openvino; "
                         "ONNX Runtime runs fp32 only")
    if int8 and (engine == "torch" or export):
        raise ValueError("--int8 quantizes the checkpoint for --engine onnxruntime or openvino; "
                         "to evaluate an int8 file already written, give it with --model")
    if int8 and not calib_data:
        raise ValueError("--int8 needs --calib-data ROOT (a folder of images to calibrate on)")
    if int8:
        calibration_files(calib_data)


def evaluation_model(model: nn.Module, engine: str = "torch", *, export: str | Path | None = None,
                     int8: bool = False, calib_data: str | Path | None = None,
                     calib_size: int = 300, threads: int | None = None,
                     log: Callable[[str], None] | None = print, precision: str = "fp32",
                     device: torch.device | None = None, keep_fp32: Sequence[str] = (),
                     int8_preset: str = NNCF_PRESET) -> nn.Module | EngineModel:
    """What ``personkit eval`` evaluates: ``model`` itself (``engine="torch"``; with bf16
    through :class:`TorchEngine`'s autocast on ``device``), the exported file ``export`` (on
    ``engine`` when not torch), or ``model`` exported (and with ``int8`` quantized) for
    ``engine`` (``keep_fp32``: more node-name patterns int8 leaves in fp32); the evaluation
    code takes any of them for the model."""
    check_evaluation_options(engine, export, int8, calib_data, precision)
    if export:
        return EngineModel.from_export(export, None if engine == "torch" else engine,
                                       threads=threads, precision=precision)
    if engine == "torch":
        if precision == "fp32":
            return model
        return EngineModel.from_torch(model, device or next(model.parameters()).device,
                                      precision)
    return EngineModel.from_model(model, engine, int8=int8, calib_data=calib_data,
                                  calib_size=calib_size, threads=threads, log=log,
                                  precision=precision, keep_fp32=keep_fp32,
                                  int8_preset=int8_preset)


def _export_for(target: EngineModel, model: nn.Module, engine: str, size: tuple[int, int],
                int8: bool, calib_data: str | Path | None, calib_size: int,
                keep_fp32: Sequence[str], threads: int | None,
                log: Callable[[str], None] | None, precision: str = "fp32",
                preset: str = NNCF_PRESET) -> Engine:
    """Export ``model`` at ``size`` into ``target``'s folder (and quantize it) and open it."""
    folder = Path(target._tmp.name) / f"{size[0]}x{size[1]}"
    path = export_onnx(model, folder / "model.onnx", input_size=size)
    if engine == "openvino":
        path = export_openvino(model, folder / "openvino", onnx_path=path, input_size=size)
    if int8:
        meta = dataclasses.replace(model.meta, input_size=size)
        path = quantize_export(path, calibration_batch(calib_data, meta, calib_size, log=log),
                               keep_fp32=keep_fp32, preset=preset)
        if log:
            kept = ", ".join([*FP32_PARTS, *keep_fp32])
            log(f"{target.name} at {size[0]}x{size[1]}: kept in fp32: {kept}")
    return open_export(path, engine, threads=threads, precision=precision)
