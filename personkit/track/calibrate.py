"""Calibrations in the space tracks live in: track means of video (issue 34).

A track's (and an index entry's) yes/no attribute is decided on the mean of its frames'
class-1 probabilities, and two tracks are the same person when their mean embeddings are
close (:mod:`personkit.track.merge`). Means of video frames sit elsewhere than single Market
crops: side views, crowds, other scenes; the demo model's backpack threshold fitted on Market
crops (0.44) said "yes" for 24 of 42 entries of three ``crossing`` cameras, 10 of whom carry
one, and its same-person threshold between Market tracks (about two views each) let 28 % of
index entries find a stranger within it. So both are fitted again on track means of
sequences with ground-truth boxes, identities and attributes:

* each binary attribute's threshold by the crop rule
  (:func:`~personkit.metrics.attributes.calibrate_thresholds`: the bagged threshold that
  maximises balanced accuracy where it beats the crop threshold on both halves of the
  identities, else the crop threshold, which is 0.5 where ``personkit eval`` kept the
  arg-max);
* the same-person threshold by the crop rule
  (:func:`~personkit.metrics.matching.calibrate_match_threshold`: the largest distance at
  which at most 1 % of the tracks, as strangers, find another person within it), every track
  querying the others, its identity in another camera being the match.

A track here is one ground-truth identity in one sequence, its frames every ``every``-th
frame where at least ``min_visibility`` of the person is visible (what a detector finds: the
synthetic detector never reports less than 0.3, :mod:`personkit.synth.mot`), its boxes
clipped to the frame, each frame weighted alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from personkit.data.io import read_image
from personkit.data.mot import mot_images, read_mot_rows
from personkit.inference.predictor import PersonResult, Predictor
from personkit.metrics.attributes import IGNORE_INDEX, attribute_accuracy, calibrate_thresholds
from personkit.metrics.matching import STRANGER_ACCEPT, calibrate_match_threshold
from personkit.models.identity import TRACK_KEYS, read_calibrations, write_calibration
from personkit.track.merge import l2_normalise, mean_embedding

#: ``labels(sequence folder, ground-truth id)`` -> the person's identity (the same in every
#: sequence that shows them) and attribute labels (``{name: class name}``; attributes it
#: leaves out are unknown for that person).
TrackLabels = Callable[[Path, int], tuple[str, Mapping[str, str]]]


@dataclass
class GtTrack:
    """What the model says of one ground-truth person in one sequence, over their frames."""

    sequence: Path
    gt_id: int
    frame_attributes: np.ndarray  # frames x binary attributes: class-1 probabilities
    embedding: np.ndarray | None  # mean of the L2-normalised frame embeddings

    @property
    def frames(self) -> int:
        return len(self.frame_attributes)

    @property
    def attributes(self) -> np.ndarray:
        """The mean class-1 probability of each binary attribute over the frames."""
        return self.frame_attributes.mean(0)


def binary_attributes(predictor: Predictor) -> list[str]:
    """The predictor's yes/no attributes (two classes), in the model's order."""
    return [n for n, c in predictor.meta.attributes.items() if len(c) == 2]


def gt_tracks(predictor: Predictor, seq_dir: str | Path, every: int = 1,
              min_visibility: float = 0.3) -> list[GtTrack]:
    """Every ground-truth person of the MOT sequence ``seq_dir`` as a track (module
    docstring), by id; ids never visible enough are left out."""
    seq_dir = Path(seq_dir)
    _, _, frames = mot_images(seq_dir)
    rows = read_mot_rows(seq_dir / "gt" / "gt.txt", gt=True)
    visible = rows.table[:, 8] if rows.table.shape[1] > 8 else np.ones(len(rows.table))
    names = binary_attributes(predictor)
    seen: dict[int, list[PersonResult]] = {}
    for t, idx in rows.frame_rows().items():
        idx = idx[visible[idx] >= min_visibility]
        if (t - 1) % every or not len(idx) or t > len(frames):
            continue
        image = read_image(frames[t - 1])
        boxes = _inside(rows.boxes()[idx], image.shape[:2])
        keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        for i, r in zip(idx[keep], predictor.predict(image, boxes[keep]), strict=True):
            seen.setdefault(int(rows.table[i, 1]), []).append(r)
    return [GtTrack(seq_dir, g, np.array([[r.attributes[n].probabilities[1] for n in names]
                                          if r.attributes else [] for r in seen[g]]),
                    mean_embedding([r.embedding for r in seen[g] if r.embedding is not None]))
            for g in sorted(seen)]


def _inside(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``boxes`` (x1, y1, x2, y2) clipped to an image of ``shape`` (H, W)."""
    h, w = shape
    return np.stack([boxes[:, 0].clip(0, w), boxes[:, 1].clip(0, h), boxes[:, 2].clip(0, w),
                     boxes[:, 3].clip(0, h)], axis=1)


def calibrate_tracks(predictor: Predictor, sequences: Sequence[str | Path],
                     labels: TrackLabels, every: int = 2,
                     min_visibility: float = 0.3) -> dict[str, Any]:
    """Both calibrations on the ground-truth tracks of ``sequences`` (module docstring):
    ``{"attributes": calibrate_track_attributes(...), "match": calibrate_track_match(...)}``,
    each with the sequences, ``every`` and ``min_visibility`` it used; ``match`` is None when
    no person is seen by two of the cameras (or the model has no ReID head).

    Raises:
        ValueError: ``sequences`` hold no track.
    """
    tracks = [t for seq in sequences for t in gt_tracks(predictor, seq, every, min_visibility)]
    if not tracks:
        raise ValueError(f"no ground-truth track in {', '.join(map(str, sequences))}")
    names = [Path(s).name for s in sequences]
    used = {"sequences": names, "every": every, "min_visibility": min_visibility}
    kinds = ", ".join(sorted({n.rsplit("-", 1)[0] for n in names}))
    match = None
    if all(t.embedding is not None for t in tracks):
        try:
            match = {**calibrate_track_match(tracks, labels), **used,
                     "dataset": f"{kinds} ({len(names)} cameras)"}
        except ValueError:  # nobody in two cameras: no same-person pair to calibrate on
            match = None
    return {"attributes": {**calibrate_track_attributes(predictor, tracks, labels), **used},
            "match": match}


def calibrate_track_attributes(predictor: Predictor, tracks: Sequence[GtTrack],
                               labels: TrackLabels) -> dict[str, Any]:
    """Each binary attribute's decision threshold on the means of ``tracks`` (module
    docstring), with the label-based mA of decisions by thresholds fitted on the other half of
    the identities (``mA/NAME``, ``mA``), the attributes whose threshold differs from the crop
    one (``changed``), the number of tracks and of positive tracks per attribute; what
    ``calibration.json`` keeps as ``track_attributes``. An attribute with no
    positive or no negative track cannot be fitted: it is listed under ``left_out`` and keeps
    its crop threshold (``Predictor.track_attribute_thresholds``).

    Raises:
        ValueError: the model has no yes/no attribute, or there is no track.
    """
    names = binary_attributes(predictor)
    if not names or not tracks:
        raise ValueError("nothing to calibrate: " + ("no track" if names else
                                                     "the model has no yes/no attribute"))
    people = [labels(t.sequence, t.gt_id) for t in tracks]
    p = np.stack([t.attributes for t in tracks])
    y = np.array([[_class_index(predictor, n, known.get(n)) for n in names]
                  for _, known in people])
    g = np.array([identity for identity, _ in people])
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
            "tracks": len(p), "identities": len(set(g.tolist())),
            "positives": {n: int((y[:, b] == 1).sum()) for b, n in enumerate(names)},
            **{k: round(v, 4) for k, v in scores.items() if k.startswith("mA")}}


def calibrate_track_match(tracks: Sequence[GtTrack], labels: TrackLabels,
                          stranger_accept: float = STRANGER_ACCEPT) -> dict[str, Any]:
    """The same-person threshold between the mean embeddings of ``tracks`` (module
    docstring), with its precision, recall and stranger acceptance; what ``calibration.json``
    keeps as ``track_match``, measured but not applied: the index and ``track --gallery`` keep
    the Market track threshold (docs/search.md, *Same person on index entries*).

    Raises:
        ValueError: a track has no embedding, or no person is seen by two cameras.
    """
    if any(t.embedding is None for t in tracks):
        raise ValueError("the tracks have no embeddings: the model has no ReID head")
    means = l2_normalise(np.stack([t.embedding for t in tracks]))
    people = [labels(t.sequence, t.gt_id)[0] for t in tracks]
    ids = {name: k for k, name in enumerate(sorted(set(people)))}
    pids = np.array([ids[name] for name in people])
    cams = np.array([str(t.sequence) for t in tracks])
    out = calibrate_match_threshold(1.0 - means @ means.T, pids, pids, cams, cams,
                                    stranger_accept)
    return {**out, "space": "video track means", "tracks": len(tracks),
            "identities": len(ids), "cameras": len(set(cams.tolist())),
            "views": round(float(np.mean([t.frames for t in tracks])), 1)}


def _class_index(predictor: Predictor, name: str, label: str | None) -> int:
    """The class index of ``label`` for attribute ``name`` (IGNORE_INDEX when unknown)."""
    if label is None:
        return IGNORE_INDEX
    classes = list(predictor.meta.attributes[name])
    if label not in classes:
        raise ValueError(f"attribute {name}: label {label!r} is not one of {classes}")
    return classes.index(label)


def save_track_calibration(model_path: str | Path, predictor: Predictor,
                           calibrated: dict[str, Any]) -> Path:
    """Store :func:`calibrate_tracks`'s result in the record of ``predictor``'s model in
    ``model_path``'s ``calibration.json``: ``track_attributes`` (where
    ``Predictor.track_attribute_thresholds`` finds them) and ``track_match`` (stored for
    measurement, not applied; left out when None).

    Raises:
        ValueError: the file has no record for this model (run ``personkit eval`` first: the
            record holds its crop thresholds).
    """
    records = read_calibrations(model_path)
    model_id = predictor.model_id
    if model_id not in records:
        raise ValueError(f"{model_path}: no calibration record for model {model_id} (it holds "
                         f"{', '.join(records) or 'none'}); run `personkit eval` on it first")
    found = dict(zip(TRACK_KEYS, (calibrated["attributes"], calibrated["match"]), strict=True))
    record = {k: v for k, v in records[model_id].items() if k not in TRACK_KEYS}
    return write_calibration(model_path, model_id,
                             {**record, **{k: v for k, v in found.items() if v is not None}})
