"""Which embedding space a model's embeddings live in, and what was measured about it.

A model's *identity* (:func:`model_identity`) names its embedding space: its metadata, its
weights' content hash and whether embeddings average the flipped image. Gallery banks and
indexes store it, since distances between two spaces mean nothing.

A space's calibrated "same person" threshold
(:func:`~personkit.metrics.matching.calibrate_match_threshold`) is written by
``personkit eval`` into ``calibration.json`` in the run directory (next to
``model.safetensors``; for a checkpoint ``RUN/checkpoints/step_*.pt`` its run directory),
keyed by identity so that a record never applies to other weights; ``personkit export``
copies the records of its weights into the exported file (``personkit_calibration``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from personkit.checkpoint import write_json
from personkit.models.multitask import ModelMeta

CALIBRATION_FILE = "calibration.json"
#: The keys of a record fitted on video track means (:mod:`personkit.track.calibrate`), which
#: a new ``personkit eval`` of the same weights keeps.
TRACK_KEYS = ("track_attributes", "track_match")


def model_identity(meta: ModelMeta, weights: str | None, flip_tta: bool) -> str | None:
    """16 hex digits of the SHA-256 of ``meta``, the weights' content hash and flip averaging;
    None when the weights are unknown (an export written before exports carried their hash)."""
    if not weights:
        return None
    spec = json.dumps({"meta": meta.to_dict(), "weights": weights, "flip_tta": bool(flip_tta)},
                      sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def calibration_file(model_path: str | Path) -> Path:
    """Where the calibration of a run directory, checkpoint or ``.safetensors`` file lives."""
    path = Path(model_path)
    if path.is_dir():
        return path / CALIBRATION_FILE
    folder = path.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / CALIBRATION_FILE


def read_calibrations(model_path: str | Path) -> dict[str, dict[str, Any]]:
    """Every record of ``model_path``'s calibration file (``{identity: record}``; empty when
    there is none).

    Raises:
        ValueError: the file exists but is not a calibration file (naming it).
    """
    path = calibration_file(model_path)
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(records, dict) or not all(
                isinstance(r, dict) and "threshold" in r for r in records.values()):
            raise ValueError("expected {model identity: {'threshold': ..., ...}}")
    except (json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a personkit calibration file ({e}); delete it and "
                         f"run `personkit eval` again") from None
    return records


def write_calibration(model_path: str | Path, identity: str, record: dict[str, Any]) -> Path:
    """Add (or replace) ``identity``'s record in ``model_path``'s calibration file."""
    records = read_calibrations(model_path)
    records[identity] = record
    return write_json(calibration_file(model_path), records)
