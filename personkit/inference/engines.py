"""Inference engines behind :class:`~personkit.inference.Predictor`: eager PyTorch, ONNX Runtime
and OpenVINO, all with one contract so that pre- and post-processing are shared.

An engine takes a normalised ``B×3×H×W`` float32 batch at the model's input size and returns
the raw network outputs under the export's names (:mod:`personkit.inference.export`):
``embedding``, ``attr_<name>`` (logits), ``keypoints`` (normalised, soft-argmax inside the
graph), ``keypoint_scores`` and either ``parts`` (logits) or ``part_labels`` (the arg-max,
``uint8``; the torch engine takes it on the device). Every engine knows the model's
:class:`~personkit.models.ModelMeta` and the tasks it can run: an exported file carries both
(ONNX ``metadata_props`` / OpenVINO ``rt_info``, keys ``personkit_meta`` and
``personkit_heads``), so no config is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from personkit.extras import MissingExtraError as MissingExtraError  # re-exported
from personkit.extras import require
from personkit.models import ModelMeta, PersonOutputs

ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
TASKS: tuple[str, ...] = ("reid", "attributes", "pose", "segmentation")
META_KEY, HEADS_KEY = "personkit_meta", "personkit_heads"
def output_names(meta: ModelMeta, heads: Sequence[str]) -> list[str]:
    """Output names for ``heads``, in graph order (the ONNX/OpenVINO export's)."""
    names = ["embedding"] if "reid" in heads else []
    if "attributes" in heads:
        names += [f"attr_{name}" for name in meta.attributes]
    if "pose" in heads:
        names += ["keypoints", "keypoint_scores"]
    if "segmentation" in heads:
        names.append("parts")
    return names


def check_heads(requested: Collection[str] | None, available: Sequence[str],
                source: str = "this model") -> tuple[str, ...]:
    """``requested`` in task order (default: all ``available``); a head not there is an error."""
    if requested is None:
        requested = available
    missing = [h for h in requested if h not in available]
    if missing:
        raise ValueError(f"heads {missing} are not available; {source} has {tuple(available)}")
    if not requested:
        raise ValueError(f"no heads to run; {source} has {tuple(available)}")
    return tuple(t for t in TASKS if t in requested)


def export_metadata(meta: ModelMeta, heads: Sequence[str]) -> dict[str, str]:
    """The string metadata an exported file carries (``personkit_meta``, ``personkit_heads``)."""
    return {META_KEY: json.dumps(meta.to_dict()), HEADS_KEY: json.dumps(list(heads))}


def parse_metadata(props: Mapping[str, str], source: str) -> tuple[ModelMeta, tuple[str, ...]]:
    """:class:`ModelMeta` and exported heads from an exported file's metadata.

    Raises:
        ValueError: the file was not written by ``personkit export`` (no ``personkit_meta``).
    """
    if META_KEY not in props:
        raise ValueError(f"{source} has no personkit metadata ({META_KEY!r}); it was not "
                         f"written by `personkit export`, so its input size, mean/std, output "
                         f"names and class names are unknown. Re-export it with "
                         f"`personkit export CHECKPOINT --onnx FILE`")
    meta = ModelMeta.from_dict(json.loads(props[META_KEY]))
    heads = tuple(json.loads(props[HEADS_KEY])) if HEADS_KEY in props else tuple(
        t for t in TASKS if t in meta.heads)
    return meta, heads


def spin_default() -> bool:
    """Busy-wait worker threads only when the user chose ``OMP_WAIT_POLICY=ACTIVE``: on a shared
    CPU, spinning threads steal the other processes' time (see :mod:`personkit.runtime`)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"


class Engine(Protocol):
    """What :class:`~personkit.inference.Predictor` needs from an engine."""

    name: str
    meta: ModelMeta
    heads: tuple[str, ...]

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw outputs for a normalised ``B×3×H×W`` float32 batch."""
        ...


# ----------------------------------------------------------------------------- torch


class TorchEngine:
    """Eager PyTorch: the model itself, on any device, fp32 or CUDA autocast."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False):
        self.meta = model.meta
        self.heads = tuple(t for t in TASKS if t in self.meta.heads)
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.model(x, heads=tuple(heads))
        result: dict[str, np.ndarray] = {}
        if out.embedding is not None and "reid" in heads:
            result["embedding"] = _np(out.embedding)
        for name, logits in (out.attributes or {}).items():
            result[f"attr_{name}"] = _np(logits)
        if out.keypoints is not None:
            result["keypoints"] = _np(out.keypoints)
            result["keypoint_scores"] = _np(out.keypoint_scores)
        if out.parts is not None:
            result["part_labels"] = out.parts.argmax(dim=1).to(torch.uint8).cpu().numpy()
        return result

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.float().cpu().numpy()


# ----------------------------------------------------------------------------- ONNX Runtime


class OnnxRuntimeEngine:
    """ONNX Runtime on an exported ``.onnx`` file (CPU; CUDA provider first on ``cuda``).

    Args:
        path: the ``.onnx`` file written by ``personkit export``.
        device: ``cpu`` or ``cuda``.
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
        spin: let idle worker threads busy-wait (default: only with ``OMP_WAIT_POLICY=ACTIVE``).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 spin: bool | None = None):
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not (spin_default() if spin is None else spin):
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta, self.heads = parse_metadata(props, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        names = [n for n in output_names(self.meta, heads) if n in self.outputs]
        got = self.session.run(names, {self.input_name: np.ascontiguousarray(images)})
        return dict(zip(names, got, strict=True))


# ----------------------------------------------------------------------------- OpenVINO


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO export: the file itself, or ``model.xml`` in a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.xml"
    if not path.is_file():
        raise FileNotFoundError(f"OpenVINO model not found: {path} (expected the .xml written "
                                f"by `personkit export --openvino DIR`, or that folder)")
    return path


def read_openvino_metadata(model: Any, source: str) -> tuple[ModelMeta, tuple[str, ...]]:
    """Metadata from an OpenVINO model's ``rt_info`` (``personkit/<key>``) or, for a model read
    from ONNX, from the ONNX ``metadata_props`` OpenVINO keeps under ``framework``."""
    props: dict[str, str] = {}
    for key in (META_KEY, HEADS_KEY):
        for path in (["personkit", key], ["framework", key]):
            if model.has_rt_info(path):
                props[key] = model.get_rt_info(path).astype(str)
                break
    return parse_metadata(props, source)


class OpenVINOEngine:
    """OpenVINO on the CPU, from an OpenVINO export (``.xml`` or its folder) or an ``.onnx``.

    Args:
        path: ``personkit export --openvino DIR`` output (the folder or ``model.xml``) or a
            personkit ``.onnx`` file.
        threads: inference threads (default: OpenVINO's, one per core).
        precision: ``f32`` (default: exact, also on CPUs where OpenVINO would pick bf16) or
            ``bf16``.
    """

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "f32"):
        ov = require("openvino")
        path = Path(path)
        self.path = path if path.suffix == ".onnx" and path.is_file() else openvino_xml(path)
        core = ov.Core()
        model = core.read_model(str(self.path))
        self.meta, self.heads = read_openvino_metadata(model, str(self.path))
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision,
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        # a tensor may have several names (the ONNX output's and its producer's): pick ours
        known = output_names(self.meta, TASKS)
        self.ports = {}
        for port in self.compiled.outputs:
            ours = [n for n in port.get_names() if n in known]
            if ours:
                self.ports[ours[0]] = port
        self.outputs = [n for n in known if n in self.ports]
        self.request = self.compiled.create_infer_request()

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        names = [n for n in output_names(self.meta, heads) if n in self.outputs]
        got = self.request.infer([np.ascontiguousarray(images)])
        return {n: np.array(got[self.ports[n]]) for n in names}


def open_export(path: str | Path, engine: str | None = None, device: str = "cpu",
                threads: int | None = None) -> OnnxRuntimeEngine | OpenVINOEngine:
    """An engine for an exported file: ``.onnx`` runs on ONNX Runtime (or OpenVINO if asked),
    an OpenVINO ``.xml`` or export folder on OpenVINO."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model not found: {path}")
    if engine is None:
        engine = "onnxruntime" if path.suffix == ".onnx" else "openvino"
    if engine == "onnxruntime":
        if path.suffix != ".onnx":
            raise ValueError(f"engine 'onnxruntime' needs an .onnx file, got {path}")
        return OnnxRuntimeEngine(path, device, threads)
    if engine == "openvino":
        if device != "cpu":
            raise ValueError(f"engine 'openvino' runs on the CPU here, got device {device!r}")
        return OpenVINOEngine(path, threads)
    raise ValueError(f"engine must be one of {ENGINES[1:]} for an exported file, got {engine!r}")


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an exported model rather than a checkpoint or run directory."""
    path = Path(path)
    return path.suffix in (".onnx", ".xml") or (path.is_dir() and (path / "model.xml").is_file())


# ----------------------------------------------------------------------------- evaluation


class EngineModel:
    """An engine that looks like a :class:`~personkit.models.MultiTaskModel` to personkit's
    evaluation code (:func:`personkit.build.run_evaluation`), so the official protocols run
    unchanged, without a second copy, on ONNX Runtime, OpenVINO and int8 exports.

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
                 heads: Sequence[str], name: str):
        self.engine_for, self.meta, self.name = engine_for, meta, name
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
            self.engines[size] = self.engine_for(size)
        return self.engines[size]

    def __call__(self, images: torch.Tensor, heads: Collection[str] | None = None
                 ) -> PersonOutputs:
        """Run the engine on a normalised ``B×3×H×W`` batch; outputs on ``images.device``."""
        heads = check_heads(heads, self.enabled, self.name)
        engine = self.engine(tuple(images.shape[-2:]))
        raw = engine.run(np.ascontiguousarray(images.detach().float().cpu().numpy()), heads)

        def tensor(name: str) -> torch.Tensor | None:
            return torch.from_numpy(raw[name]).to(images.device) if name in raw else None

        out = PersonOutputs(embedding=tensor("embedding"), keypoints=tensor("keypoints"),
                            keypoint_scores=tensor("keypoint_scores"), parts=tensor("parts"))
        if "attributes" in heads:
            out.attributes = {n: tensor(f"attr_{n}") for n in self.meta.attributes}
        if out.parts is None and "part_labels" in raw:  # the arg-max only: one-hot scores
            labels = tensor("part_labels").long()
            out.parts = torch.nn.functional.one_hot(labels, len(self.meta.part_classes)
                                                    ).permute(0, 3, 1, 2).float()
        missing = [h for h, v in (("reid", out.embedding), ("pose", out.keypoints),
                                  ("segmentation", out.parts)) if h in heads and v is None]
        if missing:
            raise ValueError(f"{self.name} returned no output for heads {missing}")
        return out

    @classmethod
    def from_export(cls, path: str | Path, engine: str | None = None,
                    threads: int | None = None) -> EngineModel:
        """Evaluate an exported file (``.onnx``, int8 ``.onnx``, OpenVINO folder or ``.xml``);
        it runs only the input size it was exported for."""
        runner = open_export(path, engine, threads=threads)
        own = tuple(runner.meta.input_size)

        def engine_for(size: tuple[int, int]) -> Engine:
            if size != own:
                raise ValueError(
                    f"{path} was exported for {own[0]}x{own[1]} inputs, but an evaluation set "
                    f"is read at {size[0]}x{size[1]}: evaluate the checkpoint with --engine "
                    f"(one export per input size) or pick sets of that size with --datasets")
            return runner

        return cls(engine_for, runner.meta, runner.heads, f"{runner.name} ({path})")

    @classmethod
    def from_model(cls, model: nn.Module, engine: str, *, int8: bool = False,
                   calib_data: str | Path | None = None, calib_size: int = 300,
                   keep_fp32: Sequence[str] = (), threads: int | None = None,
                   log: Callable[[str], None] | None = None) -> EngineModel:
        """Evaluate ``model`` through ``engine`` (``onnxruntime`` or ``openvino``): for each
        input size, an fp32 export as ``personkit export`` writes it and, with ``int8``, its
        int8 copy calibrated on ``calib_size`` crops of ``calib_data`` at that size
        (:mod:`personkit.inference.quantize`; ``keep_fp32``: more node-name patterns kept in
        fp32)."""
        if engine not in ENGINES[1:]:
            raise ValueError(f"engine must be one of {ENGINES[1:]}, got {engine!r}")
        if int8 and calib_data is None:
            raise ValueError("int8 needs calibration data (--calib-data ROOT, a folder of "
                             "images)")
        require(engine)
        model = model.cpu().eval()
        heads = tuple(t for t in TASKS if t in model.enabled)
        name = f"{engine} {'int8' if int8 else 'fp32'}"
        result = cls(lambda size: _export_for(result, model, engine, size, int8, calib_data,
                                              calib_size, keep_fp32, threads, log),
                     model.meta, heads, name)
        result._tmp = tempfile.TemporaryDirectory(prefix="personkit-eval-")
        return result


def _export_for(target: EngineModel, model: nn.Module, engine: str, size: tuple[int, int],
                int8: bool, calib_data: str | Path | None, calib_size: int,
                keep_fp32: Sequence[str], threads: int | None,
                log: Callable[[str], None] | None) -> Engine:
    """Export ``model`` at ``size`` into ``target``'s folder (and quantize it) and open it."""
    from personkit.inference.export import export_onnx, export_openvino
    from personkit.inference.quantize import FP32_PARTS, calibration_batch, quantize_export

    folder = Path(target._tmp.name) / f"{size[0]}x{size[1]}"
    path = export_onnx(model, folder / "model.onnx", input_size=size)
    if engine == "openvino":
        path = export_openvino(model, folder / "openvino", onnx_path=path, input_size=size)
    if int8:
        meta = dataclasses.replace(model.meta, input_size=size)
        path = quantize_export(path, calibration_batch(calib_data, meta, calib_size, log=log),
                               keep_fp32=keep_fp32)
        if log:
            kept = ", ".join([*FP32_PARTS, *keep_fp32])
            log(f"{target.name} at {size[0]}x{size[1]}: kept in fp32: {kept}")
    return open_export(path, engine, threads=threads)
