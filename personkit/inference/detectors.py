"""Person detectors: frames in, person boxes out, for ``predict`` and ``track`` without a
boxes file (``--detector``).

A detector takes RGB ``uint8`` frames and returns, per frame, an ``N×5`` float32 array
``x1, y1, x2, y2, score`` in the frame's 0-based pixels, persons only, best first. Every
back-end shares the clean-up (:func:`~personkit.models.detector.clean_detections`): boxes are
clipped to the frame, boxes with a non-finite value are dropped and counted
(:attr:`~personkit.models.detector.DetectorBase.dropped`), boxes without area after clipping
are dropped, and a score threshold applies. That contract and the torch back-end live in
:mod:`personkit.models.detector`, where training evaluates its detector with them.

Back-ends (:func:`open_detector` picks one from a name or a path):

* :class:`~personkit.models.detector.TorchvisionDetector`: torchvision's COCO detectors by name
  (``fasterrcnn_mobilenet_v3_large_320_fpn``, ``fcos_resnet50_fpn``, ...; COCO label 1 is
  ``person``) with their published weights through torchvision's weights API, cached where
  torch caches them (``$TORCH_HOME/hub/checkpoints``). personkit never downloads in tests or
  the demo; with no network and no cached file the error names the file, the folder and the
  URL to fetch it from. ``weights=None`` builds random weights (tests).
* :class:`OnnxDetector`: ONNX files in the layouts users bring (see :data:`ONNX_LAYOUTS`):
  ultralytics YOLOv8/YOLO11 ``[1, 4+C, N]``, YOLOv5 ``[1, 3 × cells, 5+C]`` and YOLOX
  ``[1, cells, 5+C]`` (letterboxed input, decoded here with NMS, YOLOX's grid offsets too when
  its export left them undecoded; COCO class 0 is ``person``), and torchvision detectors
  exported to ONNX (``boxes``, ``labels``, ``scores`` outputs from one ``[3, H, W]`` image).
  YOLOv5 and YOLOX share their rows (``cx, cy, w, h, objectness, C class scores``) but not
  their input (YOLOv5: RGB / 255, centred letterbox; YOLOX: BGR 0-255, top-left), so they are
  told apart by the row count N: YOLOX has one row per grid cell of strides 8/16/32 at the
  input size, YOLOv5 three anchors per cell (of strides 8/16/32, or 8/16/32/64 for its P6
  models). Rows of that shape with any other N are refused as ambiguous.

Devices: :func:`open_detector` runs torch back-ends on the device asked for (a device the
machine lacks is an error naming it); an ONNX file runs on ONNX Runtime's CUDA provider for
``cuda`` when this ONNX Runtime has it, else on the CPU with a warning saying so.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from personkit.data.constants import DETECTOR_SCORE, PERSON_LABEL
from personkit.models.detector import DetectorBase, TorchvisionDetector, torchvision_detectors

#: COCO's person label in the contiguous 80-class list of YOLO-family exports (torchvision's
#: 91-entry list: :data:`~personkit.data.constants.PERSON_LABEL`).
YOLO_PERSON = 0
#: The ONNX layouts :class:`OnnxDetector` reads.
ONNX_LAYOUTS = ("yolov8", "yolov5", "yolox", "torchvision")
#: Layouts whose rows carry an objectness column (score = objectness × class score).
OBJECTNESS_LAYOUTS = ("yolov5", "yolox")


# ----------------------------------------------------------------------------- ONNX


def letterbox(image: np.ndarray, size: tuple[int, int], centre: bool = True,
              pad: int = 114) -> tuple[np.ndarray, float, tuple[float, float]]:
    """``image`` scaled by ``gain = min(H/h, W/w)`` into a ``size = (H, W)`` canvas filled
    with ``pad``, centred (ultralytics) or at the top left (YOLOX); returns the canvas, the
    gain and the ``(x, y)`` offset, so that ``x_frame = (x_input - dx) / gain``."""
    h, w = image.shape[:2]
    gain = min(size[0] / h, size[1] / w)
    nh, nw = max(1, round(h * gain)), max(1, round(w * gain))
    dy, dx = ((size[0] - nh) / 2, (size[1] - nw) / 2) if centre else (0.0, 0.0)
    canvas = np.full((size[0], size[1], 3), pad, np.uint8)
    top, left = int(round(dy - 0.1)), int(round(dx - 0.1))
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh),
                                                      interpolation=cv2.INTER_LINEAR)
    return canvas, gain, (float(left), float(top))


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by non-maximum suppression (torchvision's), best first."""
    from torchvision.ops import nms as tv_nms

    if not len(boxes):
        return np.zeros(0, np.int64)
    return tv_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(),
                  iou).numpy()


#: YOLOX's strides; its default export leaves the box outputs relative to these grids.
YOLOX_STRIDES = (8, 16, 32)
#: YOLOv5's anchors per grid cell, and the strides of its P5 and P6 models.
YOLOV5_ANCHORS, YOLOV5_STRIDES = 3, ((8, 16, 32), (8, 16, 32, 64))


def grid_cells(size: tuple[int, int], strides: Sequence[int] = YOLOX_STRIDES) -> int:
    """Grid cells of an ``(H, W)`` input over ``strides``."""
    return sum((size[0] // s) * (size[1] // s) for s in strides)


def yolox_raw(rows: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether YOLOX outputs are undecoded (YOLOX's default export, without
    ``--decode_in_inference``): one row per grid cell of strides 8/16/32, and widths that
    are log-scale (nearly all below the smallest stride) rather than pixels."""
    return len(rows) == grid_cells(size) and float(np.percentile(rows[:, 2], 99)) < YOLOX_STRIDES[0]


def yolox_decode(rows: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Grid offsets to input pixels, as YOLOX's ``demo_postprocess``: ``xy = (xy + cell) *
    stride``, ``wh = exp(wh) * stride`` (scores are already sigmoid)."""
    grids, strides = [], []
    for s in YOLOX_STRIDES:
        ys, xs = np.meshgrid(np.arange(size[0] // s), np.arange(size[1] // s), indexing="ij")
        grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
        strides.append(np.full((grids[-1].shape[0], 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    out = rows.astype(np.float32).copy()
    out[:, :2] = (rows[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(rows[:, 2:4]) * stride
    return out


def onnx_input_size(inp: Any) -> tuple[int, int]:
    """``(H, W)`` of an ONNX detector's image input; a dynamic side counts as 640."""
    h, w = inp.shape[-2:]
    return (h if isinstance(h, int) else 640, w if isinstance(w, int) else 640)


def _yolo_layout(path: Path, a: int, b: int, size: tuple[int, int]) -> str | None:
    """The layout of a ``[1, a, b]`` output for an ``(H, W)`` input: the one whose count of
    rows or anchors is exact (YOLOv8 ``b`` = grid cells, YOLOX ``a`` = cells, YOLOv5 ``a`` =
    3 × cells); none exact: YOLOv8 when ``a < b`` (as before), a ValueError when the rows of
    YOLOv5 and YOLOX cannot be told apart or several layouts fit; None for another shape."""
    cells = grid_cells(size)
    v5 = [YOLOV5_ANCHORS * grid_cells(size, strides) for strides in YOLOV5_STRIDES]
    exact = [name for name, ok in (("yolov8", a > 4 and b == cells),
                                   ("yolox", b > 5 and a == cells),
                                   ("yolov5", b > 5 and a in v5)) if ok]
    if len(exact) == 1:
        return exact[0]
    if not exact and 4 < a < b:
        return "yolov8"  # [1, 4+C, N]: C classes, N anchors
    where = f"{path}: output [1, {a}, {b}] for the {size[0]}×{size[1]} input"
    if exact:
        raise ValueError(f"{where} fits several layouts ({', '.join(exact)}), which need "
                         f"different preprocessing and decoding; export it at another size")
    if b > 5 and a > b:
        raise ValueError(f"{where} has the rows of YOLOv5 and of YOLOX (cx, cy, w, h, "
                         f"objectness, classes), but YOLOX has {cells} rows there (one per "
                         f"grid cell of strides 8/16/32) and YOLOv5 {v5[0]} (3 anchors per "
                         f"cell; {v5[1]} with stride 64): {a} is neither, so personkit cannot "
                         f"tell which preprocessing it needs (YOLOv5: RGB / 255, centred; "
                         f"YOLOX: BGR 0-255, top left); export it at its input size")
    return None


def onnx_layout(path: Path, inputs: list[Any], outputs: list[Any]) -> str:
    """Which of :data:`ONNX_LAYOUTS` an ONNX detector has, from its input and output shapes;
    another layout, or an ambiguous one, is a ValueError naming the shapes found."""
    names = {o.name for o in outputs}
    shape = [inputs[0].shape, [o.shape for o in outputs]]
    if {"boxes", "labels", "scores"} <= names and len(inputs[0].shape) == 3:
        return "torchvision"
    if len(outputs) == 1 and len(inputs[0].shape) == 4 and len(outputs[0].shape) == 3:
        a, b = outputs[0].shape[1:]
        if isinstance(a, int) and isinstance(b, int):
            layout = _yolo_layout(path, a, b, onnx_input_size(inputs[0]))
            if layout is not None:
                return layout
    raise ValueError(f"{path}: not a detector layout personkit reads (input {shape[0]}, "
                     f"outputs {shape[1]}); supported: ultralytics YOLOv8/11 [1, 4+C, N], "
                     f"YOLOv5 [1, 3 × grid cells, 5+C], YOLOX [1, grid cells, 5+C], "
                     f"torchvision exports (boxes, labels, scores from one [3, H, W] image)")


class OnnxDetector(DetectorBase):
    """An ONNX detector file (:data:`ONNX_LAYOUTS`) on ONNX Runtime: the CPU provider, or
    CUDA's for a ``cuda`` device when this ONNX Runtime has it (else the CPU, with a warning).

    Args:
        path: the ``.onnx`` file.
        iou: NMS IoU for the YOLO layouts (torchvision exports run their own NMS).
        person_class: the person's class index (YOLO: 0, torchvision: 1).
        device: ``cpu`` or ``cuda`` (``cuda:N``: ONNX Runtime's default GPU).
    """

    def __init__(self, path: str | Path, min_score: float = DETECTOR_SCORE, iou: float = 0.5,
                 person_class: int | None = None, threads: int | None = None,
                 device: str = "cpu"):
        from personkit.inference.backends import ort_session

        super().__init__(min_score)
        self.path, self.iou = Path(path), iou
        self.session = ort_session(self.path, _ort_device(device, self.path), threads=threads,
                                   what="ONNX detector")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.layout = onnx_layout(self.path, inputs, outputs)
        self.name = f"{self.layout}:{self.path.name}"
        self.input = inputs[0]
        if "float" not in self.input.type:
            raise ValueError(f"{self.path}: input {self.input.name!r} is {self.input.type}, "
                             f"not a float image tensor")
        self.person = person_class if person_class is not None else (
            PERSON_LABEL if self.layout == "torchvision" else YOLO_PERSON)
        self.size = onnx_input_size(self.input)

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime providers the session runs on, first used first."""
        return list(self.session.get_providers())

    def _run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(names, feeds)

    def _raw(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._one(image) for image in images]

    def _input(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """The letterboxed input tensor, the gain and the offset: YOLOX BGR 0-255 at the top
        left (YOLOX's preproc since its 2021-08 weights); YOLOv5/v8 RGB / 255, centred."""
        yolox = self.layout == "yolox"
        canvas, gain, offset = letterbox(image, self.size, centre=not yolox)
        if yolox:
            x = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        else:
            x = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(x), gain, offset

    def _one(self, image: np.ndarray) -> np.ndarray:
        if self.layout == "torchvision":
            x = np.ascontiguousarray(image.transpose(2, 0, 1), np.float32) / 255.0
            boxes, labels, scores = self._run(["boxes", "labels", "scores"],
                                              {self.input.name: x})
            person = labels == self.person
            return np.concatenate([boxes[person], scores[person, None]], 1)
        x, gain, (dx, dy) = self._input(image)
        (out,) = self._run(None, {self.input.name: x})
        objectness = self.layout in OBJECTNESS_LAYOUTS
        rows = out[0] if objectness else out[0].T  # N × (4 [+ obj] + C)
        if self.layout == "yolox" and yolox_raw(rows, self.size):
            rows = yolox_decode(rows, self.size)
        cls = rows[:, 5:] * rows[:, 4:5] if objectness else rows[:, 4:]
        if self.person >= cls.shape[1]:
            raise ValueError(f"{self.path}: person class {self.person} but the model has "
                             f"{cls.shape[1]} classes")
        best = cls.argmax(1)
        score = cls[np.arange(len(rows)), best]
        keep = (best == self.person) & (score >= self.min_score)
        cx, cy, bw, bh = (rows[keep, i] for i in range(4))
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes = (boxes - [dx, dy, dx, dy]) / gain
        kept = nms(boxes, score[keep], self.iou)
        return np.concatenate([boxes[kept], score[keep][kept, None]], 1)


class OpenVinoDetector(OnnxDetector):
    """An ONNX detector file run by OpenVINO's CPU plugin at ``precision`` (``bf16``: AMX or
    AVX512-BF16; ``f32``), read and decoded as :class:`OnnxDetector` does (whose ONNX Runtime
    session reads the file's layout); ``ir``: an OpenVINO IR of the same network to run
    instead (the int8 one ``personkit export --model RUN --auto`` writes). ``--detector RUN``
    uses one only where that export's AP check passed (:func:`checked_detector_engine`)."""

    def __init__(self, path: str | Path, min_score: float = DETECTOR_SCORE, iou: float = 0.5,
                 person_class: int | None = None, threads: int | None = None,
                 precision: str = "bf16", ir: str | Path | None = None):
        from personkit.extras import require
        from personkit.inference.backends import openvino_config, unreadable_export

        super().__init__(path, min_score, iou, person_class, threads, "cpu")
        ov = require("openvino")
        source = Path(ir) if ir is not None else self.path
        with unreadable_export(source, "OpenVINO"):
            self.compiled = ov.Core().compile_model(str(source), "CPU",
                                                    openvino_config(precision, threads))
        self.request = self.compiled.create_infer_request()
        self.precision = "int8" if ir is not None else precision
        self.name = f"{self.layout}:{source.name} (openvino {self.precision})"

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO CPU {self.precision}"]

    def _run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.request.infer(list(feeds.values()))
        by_name = {o.get_any_name(): v for o, v in out.items()}
        return list(out.values()) if names is None else [by_name[n] for n in names]


#: What ``personkit export --model DETRUN --auto`` writes into the run (its export and its
#: checks), and the faster engines it checks against ONNX Runtime fp32 (the reference): the
#: file each runs (relative to the run) and the OpenVINO precision hint it runs with.
DETECTOR_EXPORT, DETECTOR_CHECKS = "engines/detector.onnx", "engine_checks.json"
DETECTOR_INT8 = "engines/detector-int8/model.xml"
DETECTOR_ENGINES = {"openvino-int8": (DETECTOR_INT8, "f32"),
                    "openvino-bf16": (DETECTOR_EXPORT, "bf16")}


def detector_folder(run: str | Path) -> Path:
    """The folder of a detector run given as its directory or its ``model.safetensors``."""
    return Path(run) if Path(run).is_dir() else Path(run).parent


def checked_detector_engine(run: str | Path, weights: Callable[[], str]
                            ) -> tuple[str | None, str]:
    """Which of :data:`DETECTOR_ENGINES` the run's detector runs on here, or None (ONNX
    Runtime fp32), and why, said in a line: the fastest whose ``engine_checks.json`` record
    (``personkit export --model RUN --auto``) passed for these weights (``weights()``: their
    content hash, computed only when there is a check to compare) on this CPU, with its file
    there, OpenVINO installed (and bf16 instructions for bf16), and faster than the reference
    as measured there."""
    import json

    from personkit.runtime import cpu_description

    folder = detector_folder(run)
    checks = folder / DETECTOR_CHECKS
    if not checks.is_file():
        return None, f"no engine check: `personkit export --model {folder} --auto` makes one"
    content = json.loads(checks.read_text(encoding="utf-8"))
    if content.get("weights") != weights():
        return None, f"{checks} is another model's (its weights changed since)"
    if content.get("cpu") != (here := cpu_description()):
        return None, (f"{checks} was checked on another CPU ({content.get('cpu')}; this one: "
                      f"{here}): `personkit export --model {folder} --auto --overwrite` here")
    reference = content["checks"]["onnxruntime-fp32"]["ms_per_frame"]
    why = {key: _unusable(folder, key, content) for key in DETECTOR_ENGINES}
    usable = [k for k, reason in why.items() if not reason]
    if not usable:
        return None, "; ".join(f"{k}: {reason}" for k, reason in why.items())
    best = min(usable, key=lambda k: content["checks"][k]["ms_per_frame"])
    record = content["checks"][best]
    if record["ms_per_frame"] >= reference:
        return None, (f"{best} passed but ran no faster ({record['ms_per_frame']:.1f} against "
                      f"{reference:.1f} ms a frame)")
    return best, (f"AP checked {record['checked'][:10]}: {record['loss_points']:.2f} points "
                  f"lost at most, {record['ms_per_frame']:.1f} ms a frame against "
                  f"{reference:.1f}")


def _unusable(folder: Path, key: str, content: dict[str, Any]) -> str:
    """Why engine ``key`` of :data:`DETECTOR_ENGINES` cannot run the checked detector here
    ("" when it can)."""
    from personkit.runtime import has_isa

    record = content.get("checks", {}).get(key, {})
    file, precision = DETECTOR_ENGINES[key]
    return (record.get("skipped", f"not checked (`personkit export --model {folder} --auto "
                                  f"--overwrite` checks it)") if "passed" not in record
            else f"lost {record['loss_points']:.2f} AP points (bound "
                 f"{content['bound']['max_loss_points']})" if not record["passed"]
            else "this CPU has no bf16 instructions" if precision == "bf16" and not has_isa("bf16")
            else "openvino is not installed" if not _has("openvino")
            else f"{folder / file} is missing" if not (folder / file).is_file()
            else "")


def _ort_device(device: str, path: Path) -> str:
    """``cuda`` when a CUDA device is asked for and this ONNX Runtime has its CUDA provider;
    else ``cpu``, with a warning when CUDA was asked for."""
    if not str(device).startswith("cuda"):
        return "cpu"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "cuda"
    warnings.warn(f"ONNX detector {path} runs on the CPU, not {device}: this ONNX Runtime "
                  f"has no CUDA provider (providers: "
                  f"{', '.join(onnxruntime.get_available_providers())}; install "
                  f"onnxruntime-gpu for it)", RuntimeWarning, stacklevel=3)
    return "cpu"


# ----------------------------------------------------------------------------- choosing


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _on_onnxruntime(model: Any, config: dict[str, Any], name: str, min_score: float,
                    threads: int | None) -> OnnxDetector:
    """A trained detector exported in memory (a temporary file ONNX Runtime reads whole) and
    run by ONNX Runtime: 2.6× faster than eager PyTorch on a CPU (benchmarks/RESULTS.md)."""
    import tempfile

    from personkit.extras import quiet
    from personkit.models.detector import write_detector_onnx

    with tempfile.TemporaryDirectory() as tmp, quiet():
        detector = OnnxDetector(write_detector_onnx(model, config, Path(tmp) / "detector.onnx"),
                                min_score, threads=threads)
    detector.name = f"{name} (onnxruntime)"
    return detector


def open_detector(spec: str | Path, device: str = "cpu", min_score: float = DETECTOR_SCORE,
                  threads: int | None = None, engine: str = "auto") -> DetectorBase:
    """A detector from ``--detector``: a ``.onnx`` file (:class:`OnnxDetector`), a
    ``personkit train-detector`` run directory or its ``model.safetensors`` (on the CPU run by
    ONNX Runtime when it is installed, unless ``engine`` is ``torch``; else PyTorch), or a
    torchvision builder name with its COCO weights (:class:`TorchvisionDetector`);
    ``NAME:random`` builds that detector with random weights (offline; finds nobody useful).

    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``): torch back-ends run there; an ONNX
    file runs on ONNX Runtime's CUDA provider for a CUDA device, or on the CPU with a warning
    when this ONNX Runtime lacks it.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: neither a file nor a known name (listing the names); a torch back-end on
            a device this machine lacks (naming it).
    """
    from personkit.runtime import resolve_device

    text = str(spec)
    if device == "auto":
        device = resolve_device(device).type
    if text.endswith(".onnx") or Path(text).suffix == ".onnx":
        return OnnxDetector(text, min_score, threads=threads, device=device)
    from personkit.models.detector import is_detector_file, load_person_detector

    device = str(resolve_device(device, "detector device"))  # torch: a device this machine has
    if Path(text).exists() and is_detector_file(text):
        model, config = load_person_detector(text)
        name = f"personkit:{Path(text).name}"
        if device == "cpu" and engine == "auto" and _has("onnxruntime"):
            from personkit.checkpoint import content_hash

            fast, why = checked_detector_engine(text, lambda: content_hash(model.state_dict()))
            if fast:
                folder, (file, precision) = detector_folder(text), DETECTOR_ENGINES[fast]
                detector = OpenVinoDetector(folder / DETECTOR_EXPORT, min_score,
                                            threads=threads, precision=precision,
                                            ir=folder / file if file != DETECTOR_EXPORT else None)
                shown = fast.replace("-", " ")
                detector.name = f"{name} ({shown})"
                print(f"personkit: detector auto: {shown} ({why})", file=sys.stderr)
                return detector
            print(f"personkit: detector auto: onnxruntime fp32 ({why})", file=sys.stderr)
        if device == "cpu" and engine != "torch" and _has("onnxruntime") and _has("onnx"):
            return _on_onnxruntime(model, config, name, min_score, threads)
        return TorchvisionDetector(f"personkit:{Path(text).name}", device=device,
                                   min_score=min_score, model=model)
    name, _, variant = text.partition(":")
    if variant not in ("", "random"):
        raise ValueError(f"--detector {text}: the only variant is NAME:random")
    if name in torchvision_detectors():
        return TorchvisionDetector(name, None if variant else "DEFAULT", device, min_score)
    if Path(text).exists():
        raise ValueError(f"--detector {text}: neither an .onnx file nor a personkit detector "
                         f"(a train-detector run directory or its model.safetensors)")
    raise ValueError(f"--detector {text}: no such file, and not a torchvision detector "
                     f"(valid: {', '.join(torchvision_detectors())})")


def detector_summary(detector: DetectorBase, dropped_before: int = 0) -> dict[str, Any]:
    """What a run reports about its detector (``dropped_before``: its count of dropped boxes
    when the run began, as runs may share a detector)."""
    return {"detector": detector.name, "min_score": detector.min_score,
            "dropped_non_finite": detector.dropped - dropped_before}

