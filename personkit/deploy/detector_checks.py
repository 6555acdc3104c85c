"""``personkit export --model DETRUN --auto`` for a person detector (issue 38, item 2: the
detector on the fastest engine too).

The detector is exported once to ``RUN/engines/detector.onnx`` and scored on the run's own
held-out sequences (its config's ``data.eval``, rendered when missing; every frame, where
``train-detector`` scores every n-th) as ``train-detector`` scores it (COCO AP, AP50, AP75 of
every box kept:
:func:`~personkit.metrics.detection.coco_person_ap`): on ONNX Runtime fp32, the reference and
the default; where OpenVINO is installed, on OpenVINO int8 (NNCF, calibrated on frames of the
run's training sequences: :func:`quantize_detector`) and, where the CPU has bf16
instructions, OpenVINO bf16. Each passes when it loses at most :data:`MAX_AP_LOSS_POINTS` on
each of the three; ``RUN/engine_checks.json`` (keyed by the weights' content hash and the
CPU) is what ``--detector RUN`` reads
(:func:`~personkit.inference.detectors.checked_detector_engine`: the fastest that passed).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from personkit.checkpoint import content_hash, write_json
from personkit.config import detector_config_from_dict
from personkit.data.io import read_image
from personkit.deploy.auto import EXPORTS_DIR
from personkit.engine.detector import sequence_frames
from personkit.inference.detectors import (
    DETECTOR_CHECKS,
    DETECTOR_EXPORT,
    DETECTOR_INT8,
    OnnxDetector,
    OpenVinoDetector,
    detector_folder,
)
from personkit.metrics.detection import coco_person_ap
from personkit.models.detector import load_person_detector, write_detector_onnx
from personkit.outputs import claim_outputs
from personkit.runtime import ISA_FLAGS, cpu_description, cpu_flags

#: The most AP points (of AP, AP50 and AP75 each) a faster engine may lose against fp32.
MAX_AP_LOSS_POINTS = 1.0
#: int8 quantises the network's convolutions (backbone with its FPN, and the head); the
#: input transform (resize, normalisation) and the box decoding stay fp32: quantised too,
#: the built-in detector lost 13 AP points, against 0.9 (benchmarks/RESULTS.md). The
#: node-name pattern (a regular expression) of everything kept in fp32:
INT8_KEEP_FP32 = r"^(?!/backbone/|/head/).*"
#: How many frames of the training sequences (spread evenly over them) int8 calibrates on.
INT8_CALIBRATION_FRAMES = 96
KEYS = ("AP", "AP50", "AP75")


def check_detector_engines(run: str | Path, *, overwrite: bool = False,
                           flags: Collection[str] | None = None,
                           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Export ``run``'s detector, score it on each engine this machine runs (``flags``: the
    CPU's, as :func:`~personkit.runtime.cpu_flags`), write ``engine_checks.json``; an earlier
    ``engines/`` and ``engine_checks.json`` are refused unless ``overwrite``. Returns the
    file's content."""
    folder = detector_folder(run)
    claim_outputs(folder, [EXPORTS_DIR, DETECTOR_CHECKS], overwrite, "export")
    model, config = load_person_detector(run)
    cfg = detector_config_from_dict(config, str(folder))
    onnx = write_detector_onnx(model, config, folder / DETECTOR_EXPORT)
    every = dataclasses.replace(cfg.data.eval, frame_step=1)  # all, not every n-th: less noise
    frames = sequence_frames(cfg.data.root, every, cfg.data.min_visibility)
    images = [read_image(f.path) for f in frames]
    targets = ([f.boxes for f in frames], [f.ignore for f in frames])
    log(f"scoring the detector on {len(frames)} frames of "
        f"{', '.join(f'{cfg.data.eval.preset}-{s}' for s in cfg.data.eval.seeds)}")
    reference = _score(OnnxDetector(onnx, 0.0), images, targets)
    records = {"onnxruntime-fp32": {**reference, "reference": True}}
    log(f"onnxruntime fp32 (the reference): AP50 {reference['AP50']:.3f}, "
        f"{reference['ms_per_frame']:.1f} ms a frame")
    flags = cpu_flags() if flags is None else set(flags)
    records["openvino-int8"] = _check_int8(onnx, folder, cfg, images, targets, reference, log)
    records["openvino-bf16"] = _check_bf16(onnx, images, targets, reference, flags, log)
    content = {"version": 1, "kind": "detector", "model": str(run),
               "weights": content_hash(model.state_dict()), "cpu": cpu_description(),
               "bound": {"max_loss_points": MAX_AP_LOSS_POINTS, "metrics": list(KEYS)},
               "frames": len(frames), "checks": records}
    log(f"wrote {write_json(folder / DETECTOR_CHECKS, content)}")
    return content


def _check_int8(onnx: Path, folder: Path, cfg: Any, images: list[np.ndarray],
                targets: tuple[list, list], reference: dict[str, Any],
                log: Callable[[str], None]) -> dict[str, Any]:
    """OpenVINO int8 (:func:`quantize_detector`, written to ``folder``) scored against
    ``reference``, or why it was not."""
    import importlib.util

    missing = [m for m in ("openvino", "nncf") if importlib.util.find_spec(m) is None]
    if missing:
        why = f"{' and '.join(missing)} not installed (pip install 'personkit[openvino]')"
        log(f"openvino int8: not checked ({why})")
        return {"skipped": why}
    train = sequence_frames(cfg.data.root, cfg.data.train, cfg.data.min_visibility)
    calibration = train[::max(1, len(train) // INT8_CALIBRATION_FRAMES)][:INT8_CALIBRATION_FRAMES]
    log(f"openvino int8: calibrating on {len(calibration)} frames of "
        f"{', '.join(f'{cfg.data.train.preset}-{s}' for s in cfg.data.train.seeds)}")
    ir = quantize_detector(onnx, [read_image(f.path) for f in calibration],
                           folder / DETECTOR_INT8)
    got = _score(OpenVinoDetector(onnx, 0.0, precision="f32", ir=ir), images, targets)
    return _verdict("openvino int8", got, reference, log)


def quantize_detector(onnx: Path, frames: list[np.ndarray], out: Path) -> Path:
    """NNCF post-training int8 quantisation of the torchvision-layout detector ``onnx``,
    calibrated on ``frames`` (H×W×3 RGB uint8), everything matching :data:`INT8_KEEP_FP32`
    left in fp32; the IR is written to ``out`` (``model.xml``, with its ``.bin``)."""
    import logging

    from personkit.extras import quiet, require, verbose

    ov = require("openvino")
    with quiet():  # its import logs torch extension notices
        nncf = require("nncf")
    data = nncf.Dataset([np.ascontiguousarray(f.transpose(2, 0, 1), np.float32) / 255.0
                         for f in frames])
    with quiet():
        nncf.set_log_level(logging.ERROR if not verbose() else logging.INFO)
        model = nncf.quantize(ov.convert_model(str(onnx)), data, subset_size=len(frames),
                              ignored_scope=nncf.IgnoredScope(patterns=[INT8_KEEP_FP32],
                                                              validate=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out))
    return out


def _verdict(label: str, got: dict[str, Any], reference: dict[str, Any],
             log: Callable[[str], None]) -> dict[str, Any]:
    """The check record of an engine that scored ``got`` against ``reference``."""
    loss = max(100 * (reference[k] - got[k]) for k in KEYS)
    record = {**got, "loss_points": round(loss, 3), "passed": loss <= MAX_AP_LOSS_POINTS,
              "checked": datetime.now(UTC).isoformat(timespec="seconds")}
    log(f"{label}: AP50 {got['AP50']:.3f}, at most {loss:.2f} AP points lost "
        f"(bound {MAX_AP_LOSS_POINTS}): {'PASS' if record['passed'] else 'FAIL'}; "
        f"{got['ms_per_frame']:.1f} ms a frame")
    return record


def _check_bf16(onnx: Path, images: list[np.ndarray], targets: tuple[list, list],
                reference: dict[str, Any], flags: Collection[str],
                log: Callable[[str], None]) -> dict[str, Any]:
    """OpenVINO bf16 scored against ``reference``, or why it was not."""
    import importlib.util

    if not set(ISA_FLAGS["bf16"]) & set(flags):
        why = "this CPU has no bf16 instructions"
    elif importlib.util.find_spec("openvino") is None:
        why = "openvino is not installed (pip install 'personkit[openvino]')"
    else:
        got = _score(OpenVinoDetector(onnx, 0.0, precision="bf16"), images, targets)
        return _verdict("openvino bf16", got, reference, log)
    log(f"openvino bf16: not checked ({why})")
    return {"skipped": why}


def _score(detector: OnnxDetector, images: list[np.ndarray],
           targets: tuple[list, list]) -> dict[str, Any]:
    """COCO AP of ``detector`` on ``images`` and its median milliseconds a frame."""
    detections, times = [], []
    for image in images:
        start = time.perf_counter()
        detections += detector.detect([image])
        times.append(time.perf_counter() - start)
    scores = coco_person_ap(*targets, detections)
    return {**{k: float(scores[k]) for k in KEYS},
            "ms_per_frame": round(1e3 * float(np.median(times)), 2)}
