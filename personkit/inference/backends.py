"""The backends that run a model: eager PyTorch, ONNX Runtime and OpenVINO, behind one
interface so that pre- and post-processing are shared (:class:`Engine`).

A backend takes a normalised ``B×3×H×W`` float32 batch at the model's input size and returns
the raw network outputs under the contract's names (:mod:`personkit.inference.contract`);
the torch backend gives the part arg-max (``part_labels``, ``uint8``, taken on the device)
instead of logits. Every backend knows the model's :class:`~personkit.models.ModelMeta` and
the tasks it can run: an exported file carries both, so no config is needed. The OpenVINO IR's
metadata is read and written here too (:func:`read_openvino_metadata`, :func:`save_openvino`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from personkit.checkpoint import content_hash
from personkit.extras import require, verbose
from personkit.inference.contract import (
    CALIBRATION_KEY,
    HEADS_KEY,
    META_KEY,
    TASKS,
    WEIGHTS_KEY,
    named_outputs,
    output_names,
    parse_metadata,
)
from personkit.models import ModelMeta

ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")


def spin_default() -> bool:
    """Busy-wait worker threads only when the user chose ``OMP_WAIT_POLICY=ACTIVE``: on a shared
    CPU, spinning threads steal the other processes' time (see :mod:`personkit.runtime`)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"


class Engine(Protocol):
    """What :class:`~personkit.inference.Predictor` needs from an engine."""

    name: str
    meta: ModelMeta
    heads: tuple[str, ...]
    weights_hash: str | None  # the content hash of the weights it runs (None: unknown)
    calibrations: dict[str, dict[str, Any]]  # what an export carries (models.identity)
    precision: str  # the arithmetic it runs: fp32, bf16 or fp16
    choice: dict[str, Any]  # how ``--engine auto`` chose it (empty when it was named)

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw outputs for a normalised ``B×3×H×W`` float32 batch."""
        ...


def parse_calibrations(props: dict[str, str], source: Path) -> dict[str, dict[str, Any]]:
    """The calibration records an export carries (``{model identity: record}``)."""
    if CALIBRATION_KEY not in props:
        return {}
    try:
        records = json.loads(props[CALIBRATION_KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: its {CALIBRATION_KEY!r} metadata is not JSON ({e}); "
                         f"re-export it with `personkit export`") from None
    return records if isinstance(records, dict) else {}


# ----------------------------------------------------------------------------- torch


class TorchEngine:
    """Eager PyTorch: the model itself, on any device, fp32, bf16 autocast (CPU or CUDA) or
    fp16 autocast (CUDA)."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = False):
        self.meta = model.meta
        self.heads = tuple(t for t in TASKS if t in self.meta.heads)
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.model = model.to(device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._weights_hash: str | None = None
        self.calibrations: dict[str, dict[str, Any]] = {}  # read beside the file, not here
        self.choice: dict[str, Any] = {}

    @property
    def weights_hash(self) -> str:
        """The content hash of the model's weights (as stored with its weight files)."""
        if self._weights_hash is None:
            self._weights_hash = content_hash(self.model.state_dict())
        return self._weights_hash

    @torch.inference_mode()
    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.model(x, heads=tuple(heads))
        named = named_outputs(out, self.meta, heads)
        parts = named.pop("parts", None)
        result = {name: t.float().cpu().numpy() for name, t in named.items()}
        if parts is not None:  # the arg-max on the device: labels, not logits, cross to numpy
            result["part_labels"] = parts.argmax(dim=1).to(torch.uint8).cpu().numpy()
        return result

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)


# ----------------------------------------------------------------------------- ONNX Runtime


def ort_session(path: Path, device: str = "cpu", threads: int | None = None,
                spin: bool | None = None, what: str = "ONNX model") -> Any:
    """An ONNX Runtime session on ``path`` (CUDA provider first when ``device`` is ``cuda``):
    errors-only logging unless ``--verbose``, ``threads`` intra-op threads (default: one per
    core), idle threads busy-waiting only with ``spin`` (default :func:`spin_default`); a
    missing or unreadable file is an error naming it (``what``)."""
    ort = require("onnxruntime")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 0 if verbose() else 3  # errors only, unless --verbose
    if threads:
        options.intra_op_num_threads = threads
    if not (spin_default() if spin is None else spin):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    with unreadable_export(path, "ONNX Runtime"):
        return ort.InferenceSession(str(path), options, providers=providers)


class OnnxRuntimeEngine:
    """ONNX Runtime on an exported ``.onnx`` file (CPU; CUDA provider first on ``cuda``).

    Args:
        path: the ``.onnx`` file written by ``personkit export``.
        device: ``cpu`` or ``cuda``.
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
        spin: let idle worker threads busy-wait (default: only with ``OMP_WAIT_POLICY=ACTIVE``).
    """

    name = "onnxruntime"
    precision = "fp32"  # ONNX Runtime runs the export as it is

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 spin: bool | None = None):
        self.path = Path(path)
        self.session = ort_session(self.path, device, threads, spin, what="ONNX model")
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta, self.heads = parse_metadata(props, str(self.path))
        self.weights_hash = props.get(WEIGHTS_KEY)
        self.calibrations = parse_calibrations(props, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.choice: dict[str, Any] = {}

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        names = [n for n in output_names(self.meta, heads) if n in self.outputs]
        got = self.session.run(names, {self.input_name: np.ascontiguousarray(images)})
        return dict(zip(names, got, strict=True))


# ----------------------------------------------------------------------------- OpenVINO


@contextlib.contextmanager
def unreadable_export(path: Path, runtime: str) -> Iterator[None]:
    """Turn a runtime's failure to read an exported file (truncated, corrupt, its weights
    missing) into a ``ValueError`` naming the file and the runtime's first line."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
        raise ValueError(f"{runtime} cannot read the exported model {path} (truncated or "
                         f"corrupt? re-export it with `personkit export`): {first[:300]}"
                         ) from None


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO export: the file itself, or ``model.xml`` in a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.xml"
    if not path.is_file():
        raise FileNotFoundError(f"OpenVINO model not found: {path} (expected the .xml written "
                                f"by `personkit export --openvino DIR`, or that folder)")
    if not path.with_suffix(".bin").is_file():
        raise FileNotFoundError(f"OpenVINO weights not found: {path.with_suffix('.bin')} (an "
                                f"IR is {path.name} with the .bin written next to it)")
    return path


def read_openvino_metadata(model: Any) -> dict[str, str]:
    """personkit's metadata from an OpenVINO model's ``rt_info`` (``personkit/<key>``) or, for a
    model read from ONNX, from the ONNX ``metadata_props`` OpenVINO keeps under ``framework``."""
    props: dict[str, str] = {}
    for key in (META_KEY, HEADS_KEY, WEIGHTS_KEY, CALIBRATION_KEY):
        for path in (["personkit", key], ["framework", key]):
            if model.has_rt_info(path):
                props[key] = model.get_rt_info(path).astype(str)
                break
    return props


def save_openvino(ov_model: Any, out_dir: Path, props: dict[str, str]) -> Path:
    """Save an OpenVINO model as ``out_dir/model.xml`` with ``props`` in its rt_info (weights
    are kept as they are: no fp16 compression)."""
    ov = require("openvino")

    for key, value in props.items():
        ov_model.set_rt_info(value, ["personkit", key])
    path = out_dir / "model.xml"
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path



def openvino_config(precision: str, threads: int | None = None) -> dict[str, Any]:
    """The OpenVINO CPU plugin's settings for one engine: latency first, at ``precision``;
    with ``threads`` (an engine sharing the cores with another, as the detector in the
    frame-reading thread beside the person network) that many threads, not pinned to cores:
    OpenVINO pins a compiled model's threads from the first core on, so two one-thread engines
    side by side both ran on core 0 (benchmarks/RESULTS.md, issue 38)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision,
                              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config.update(INFERENCE_NUM_THREADS=int(threads), ENABLE_CPU_PINNING=False)
    return config


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
        with unreadable_export(self.path, "OpenVINO"):
            model = core.read_model(str(self.path))
        props = read_openvino_metadata(model)
        self.meta, self.heads = parse_metadata(props, str(self.path))
        self.weights_hash = props.get(WEIGHTS_KEY)
        self.calibrations = parse_calibrations(props, self.path)
        with unreadable_export(self.path, "OpenVINO"):
            self.compiled = core.compile_model(model, "CPU", openvino_config(precision, threads))
        #: what OpenVINO compiled for: ``bf16`` only where the CPU has bf16 instructions
        self.precision = ("bf16" if "bf16" in str(self.compiled.get_property(
            "INFERENCE_PRECISION_HINT")).replace("bfloat16", "bf16") else "fp32")
        # a tensor may have several names (the ONNX output's and its producer's): pick ours
        known = output_names(self.meta, TASKS)
        self.ports = {}
        for port in self.compiled.outputs:
            ours = [n for n in port.get_names() if n in known]
            if ours:
                self.ports[ours[0]] = port
        self.outputs = [n for n in known if n in self.ports]
        self.request = self.compiled.create_infer_request()
        self.choice: dict[str, Any] = {}

    def run(self, images: np.ndarray, heads: Sequence[str]) -> dict[str, np.ndarray]:
        names = [n for n in output_names(self.meta, heads) if n in self.outputs]
        got = self.request.infer([np.ascontiguousarray(images)])
        return {n: np.array(got[self.ports[n]]) for n in names}


def open_export(path: str | Path, engine: str | None = None, device: str = "cpu",
                threads: int | None = None,
                precision: str = "fp32") -> OnnxRuntimeEngine | OpenVINOEngine:
    """An engine for an exported file: ``.onnx`` runs on ONNX Runtime (or OpenVINO if asked),
    an OpenVINO ``.xml`` or export folder on OpenVINO. ``precision`` ``bf16`` is OpenVINO's
    (``INFERENCE_PRECISION_HINT``); ONNX Runtime runs fp32 only.

    Raises:
        ValueError: a precision the engine does not run.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"exported model not found: {path}")
    if engine is None:
        engine = "onnxruntime" if path.suffix == ".onnx" else "openvino"
    if engine == "onnxruntime":
        if path.suffix != ".onnx":
            raise ValueError(f"engine 'onnxruntime' needs an .onnx file, got {path}")
        if precision != "fp32":
            raise ValueError(f"engine 'onnxruntime' runs fp32 only, got precision {precision!r}"
                             f" (bf16: --engine openvino or torch)")
        return OnnxRuntimeEngine(path, device, threads)
    if engine == "openvino":
        if device != "cpu":
            raise ValueError(f"engine 'openvino' runs on the CPU here, got device {device!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"engine 'openvino' runs fp32 or bf16, got {precision!r}")
        return OpenVINOEngine(path, threads, "f32" if precision == "fp32" else "bf16")
    raise ValueError(f"engine must be one of {ENGINES[1:]} for an exported file, got {engine!r}")


def engine_record(engine: Engine) -> dict[str, Any]:
    """What ran the network, for a command's outputs: the engine, its arithmetic and, when
    ``--engine auto`` chose it, how and why (:attr:`Engine.choice`)."""
    return {"engine": engine.name, "precision": engine.precision,
            **(engine.choice or {"chosen_by": "named"})}


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an exported model rather than a checkpoint or run directory."""
    path = Path(path)
    return path.suffix in (".onnx", ".xml") or (path.is_dir() and (path / "model.xml").is_file())
