"""Attribute decisions calibrated where they are made: on track means (issue 34).

A track's (and an index entry's) yes/no attribute is decided on the mean of its frames'
class-1 probabilities (:mod:`personkit.track.merge`), not on one crop. The means of video
frames sit elsewhere than single Market crops' probabilities (side views, crowds, other
scenes: the demo model's backpack threshold fitted on Market crops, 0.44, said "yes" for 24
of 41 entries of the ``crossing`` cameras, 10 of whom carry one), so the threshold that
decides them is fitted on track means of sequences with ground-truth boxes, identities and
attributes, by the same rule as the crop thresholds
(:func:`~personkit.metrics.attributes.calibrate_thresholds`: the bagged threshold that
maximises balanced accuracy where it beats the crop threshold on both halves of the
identities, else the crop threshold, which is 0.5 where ``personkit eval`` kept the arg-max).

A track here is one ground-truth identity in one sequence, its frames every ``every``-th
frame where at least ``min_visibility`` of the person is visible (what a detector finds: the
synthetic detector never reports less than 0.3, :mod:`personkit.synth.mot`), its boxes
clipped to the frame, each frame weighted alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.io import read_image
from personkit.data.mot import mot_images, read_mot_rows
from personkit.inference.predictor import Predictor
from personkit.metrics.attributes import IGNORE_INDEX, attribute_accuracy, calibrate_thresholds
from personkit.models.identity import read_calibrations, write_calibration

#: ``labels(sequence folder, ground-truth id)`` -> the person's identity (the same in every
#: sequence that shows them) and attribute labels (``{name: class name}``; attributes it
#: leaves out are unknown for that person).
TrackLabels = Callable[[Path, int], tuple[str, Mapping[str, str]]]


def binary_attributes(predictor: Predictor) -> list[str]:
    """The predictor's yes/no attributes (two classes), in the model's order."""
    return [n for n, c in predictor.meta.attributes.items() if len(c) == 2]


def gt_track_means(predictor: Predictor, seq_dir: str | Path, every: int = 1,
                   min_visibility: float = 0.3) -> dict[int, np.ndarray]:
    """Per ground-truth id of the MOT sequence ``seq_dir``: the mean class-1 probability of
    each binary attribute (:func:`binary_attributes` order) over its frames (module
    docstring). Ids never visible enough are left out."""
    _, _, frames = mot_images(seq_dir)
    rows = read_mot_rows(Path(seq_dir) / "gt" / "gt.txt", gt=True)
    visible = rows.table[:, 8] if rows.table.shape[1] > 8 else np.ones(len(rows.table))
    names = binary_attributes(predictor)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for t, idx in rows.frame_rows().items():
        idx = idx[visible[idx] >= min_visibility]
        if (t - 1) % every or not len(idx) or t > len(frames):
            continue
        image = read_image(frames[t - 1])
        boxes = _inside(rows.boxes()[idx], image.shape[:2])
        keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        for i, result in zip(idx[keep], predictor.predict(image, boxes[keep]), strict=True):
            gid = int(rows.table[i, 1])
            p = np.array([result.attributes[n].probabilities[1] for n in names])
            sums[gid] = sums.get(gid, 0.0) + p
            counts[gid] = counts.get(gid, 0) + 1
    return {g: sums[g] / counts[g] for g in sorted(sums)}


def _inside(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``boxes`` (x1, y1, x2, y2) clipped to an image of ``shape`` (H, W)."""
    h, w = shape
    return np.stack([boxes[:, 0].clip(0, w), boxes[:, 1].clip(0, h), boxes[:, 2].clip(0, w),
                     boxes[:, 3].clip(0, h)], axis=1)


def calibrate_track_attributes(predictor: Predictor, sequences: Sequence[str | Path],
                               labels: TrackLabels, every: int = 2,
                               min_visibility: float = 0.3) -> dict[str, Any]:
    """Each binary attribute's decision threshold on track means of ``sequences`` (module
    docstring), with the label-based mA of decisions by thresholds fitted on the other half of
    the identities (``mA/NAME``, ``mA``), the attributes whose threshold differs from the crop
    one (``changed``), the number of tracks and of positive tracks per attribute; what
    ``calibration.json`` keeps as ``track_attributes``. An attribute with no
    positive or no negative track cannot be fitted: it is listed under ``left_out`` and keeps
    its crop threshold (``Predictor.track_attribute_thresholds``).

    Raises:
        ValueError: the model has no yes/no attribute, or ``sequences`` hold no track.
    """
    names = binary_attributes(predictor)
    if not names:
        raise ValueError("the model has no yes/no attribute to calibrate")
    means, gt, groups = [], [], []
    for seq in map(Path, sequences):
        for gid, p in gt_track_means(predictor, seq, every, min_visibility).items():
            identity, known = labels(seq, gid)
            means.append(p)
            gt.append([_class_index(predictor, n, known.get(n)) for n in names])
            groups.append(identity)
    if not means:
        raise ValueError(f"no ground-truth track in {', '.join(map(str, sequences))}")
    p, y, g = np.stack(means), np.array(gt), np.array(groups)
    both = [b for b in range(len(names)) if (y[:, b] == 1).any() and (y[:, b] == 0).any()]
    fitted = [names[b] for b in both]
    crop = predictor.attribute_thresholds
    thresholds, decided = calibrate_thresholds(p[:, both], y[:, both], fitted, g, fallback=crop)
    scores = attribute_accuracy(decided, y[:, both],
                                {n: predictor.meta.attributes[n] for n in fitted})
    kept = {n: crop.get(n, 0.5) for n in fitted}
    return {"rule": "max balanced accuracy where it beats the crop threshold on both halves "
                    "of the identities (2-fold cross-fitted), else the crop threshold; on "
                    "track means",
            "thresholds": {n: round(t, 6) for n, t in thresholds.items()},
            "changed": [n for n in fitted if thresholds[n] != kept[n]],
            "left_out": [n for n in names if n not in fitted],
            "tracks": len(p), "identities": len(set(groups)),
            "positives": {n: int((y[:, b] == 1).sum()) for b, n in enumerate(names)},
            "sequences": [Path(s).name for s in sequences], "every": every,
            "min_visibility": min_visibility,
            **{k: round(v, 4) for k, v in scores.items() if k.startswith("mA")}}


def _class_index(predictor: Predictor, name: str, label: str | None) -> int:
    """The class index of ``label`` for attribute ``name`` (IGNORE_INDEX when unknown)."""
    if label is None:
        return IGNORE_INDEX
    classes = list(predictor.meta.attributes[name])
    if label not in classes:
        raise ValueError(f"attribute {name}: label {label!r} is not one of {classes}")
    return classes.index(label)


def save_track_attributes(model_path: str | Path, predictor: Predictor,
                          calibrated: dict[str, Any]) -> Path:
    """Store :func:`calibrate_track_attributes`'s result as ``track_attributes`` in the
    record of ``predictor``'s model in ``model_path``'s ``calibration.json``, where
    :attr:`~personkit.inference.predictor.Predictor.track_attribute_thresholds` finds it.

    Raises:
        ValueError: the file has no record for this model (run ``personkit eval`` first: the
            record holds its same-person threshold).
    """
    records = read_calibrations(model_path)
    model_id = predictor.model_id
    if model_id not in records:
        raise ValueError(f"{model_path}: no calibration record for model {model_id} (it holds "
                         f"{', '.join(records) or 'none'}); run `personkit eval` on it first")
    return write_calibration(model_path, model_id,
                             {**records[model_id], "track_attributes": calibrated})
