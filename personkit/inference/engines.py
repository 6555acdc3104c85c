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
import json
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from personkit.models import ModelMeta

ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
TASKS: tuple[str, ...] = ("reid", "attributes", "pose", "segmentation")
META_KEY, HEADS_KEY = "personkit_meta", "personkit_heads"
INSTALL = {"onnxruntime": "pip install 'personkit[export]'  (onnx + onnxruntime)",
           "onnx": "pip install 'personkit[export]'  (onnx + onnxruntime)",
           "openvino": "pip install 'personkit[openvino]'  (openvino + nncf)",
           "nncf": "pip install 'personkit[openvino]'  (openvino + nncf)"}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


def require(module: str) -> Any:
    """Import an optional dependency, or raise :class:`MissingExtraError` with the install
    command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{module} is not installed; install it with: "
                                f"{INSTALL.get(module, 'pip install ' + module)}") from e


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
